"""The workstation side of getting a pack onto devices: offline bundles (`edgepack bundle`),
SSH deploys to one device or a fleet (`edgepack deploy`) and benchmarks run there
(`edgepack bench --remote`). Nothing here runs on the device; the device runs the bundle's
install.sh and bench.sh with the base install."""
