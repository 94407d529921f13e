"""What a newcomer meets first (issue 15 items 3 and 4): workstation commands on a base install,
estimates without a cost summary, profile names, whole --help sentences, compare headings,
benchmark() progress."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from edgepack.cli.main import COMMANDS, EXTRA_OF_MODULE, build_parser, first_paragraph, main
from edgepack.packing import assemble_pack

FAST = ["--min-count", "5", "--min-duration", "0", "--warmup", "1", "--cold-starts", "0"]
# What a base install (numpy, onnxruntime) lacks: importing these fails as it would there.
BASE_INSTALL = f"""
import sys
for name in {sorted(EXTRA_OF_MODULE)!r}:
    sys.modules[name] = None
from edgepack.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["quantize", "model.onnx", "-o", "m.edgepack"], "compress"),
        (["compress", "recipe.toml"], "compress"),
        (["demo", "--quick"], "compress"),
        (["finetune", "minilm", "--train", "train.tsv", "-o", "out"], "compress"),
        (["optimize", "model.onnx", "--data", "d.npz", "-o", "out"], "compress"),
        (["search", "recipe.toml", "--profile", "rpi5"], "search"),
    ],
)
def test_workstation_commands_on_a_base_install_name_the_extra_in_one_line(tmp_path, argv, extra):
    (tmp_path / "recipe.toml").write_text('name = "x"\nsource = "model.onnx"\n')
    done = subprocess.run(
        [sys.executable, "-c", BASE_INSTALL, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"edgepack {argv[0]}: needs the `{extra}` extra ({lines[0].split('(')[1].split()[0]} "
        f"is not installed): pip install 'edgepack[{extra}]'"
    ], done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_module_no_extra_provides_is_not_hidden():
    from edgepack.cli.main import missing_extra

    assert missing_extra(ModuleNotFoundError("x", name="edgepack.cli.nothing")) is None
    hint = missing_extra(ModuleNotFoundError("x", name="matplotlib.pyplot"))
    assert hint == (
        "needs the `report` extra (matplotlib is not installed): pip install 'edgepack[report]'"
    )


def test_estimate_without_a_cost_summary_says_how_to_get_one(tmp_path, classifier, capsys):
    bare = tmp_path / "bare.edgepack"
    assemble_pack(bare, [classifier[0]])  # as `edgepack pack` writes it on a device
    assert main(["estimate", str(bare), "--profile", "rpi5"]) == 1
    err = capsys.readouterr().err
    assert "an estimate needs a pack made on a workstation" in err
    assert "pip install 'edgepack[compress]'" in err and "edgepack pack MODEL.onnx" in err


def test_profiles_show_suggests_the_boards_profiles(capsys):
    assert main(["profiles", "show", "rpi4"]) == 1
    assert "did you mean rpi4-1.5ghz or rpi4-1.8ghz?" in capsys.readouterr().err


def test_help_shows_each_commands_first_paragraph_whole(capsys):
    parser = build_parser()
    for name, (module_name, _) in COMMANDS.items():
        doc = importlib.import_module(f"edgepack.cli.{module_name}").__doc__
        paragraph = first_paragraph(doc)
        assert paragraph and paragraph.endswith((".", ")")), (name, paragraph)
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        assert paragraph in shown, name
    assert first_paragraph("One line\nand its end.\n\nDetails.") == "One line and its end."


def test_compare_headings_use_file_names_when_pack_names_collide(tmp_path, classifier, capsys):
    fp32, copy = tmp_path / "digits.edgepack", tmp_path / "digits-int8.edgepack"
    for path in (fp32, copy):
        assemble_pack(path, [classifier[0]], name="digits")
    assert main(["bench", str(fp32), str(copy), *FAST, "--compare", "--no-progress"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("pack"))
    assert header.split()[1:] == ["digits.edgepack", "digits-int8.edgepack"]


def test_benchmark_shows_progress_on_stderr_when_asked(tmp_path, classifier, capsys):
    from edgepack.benchmarks.harness import benchmark

    pack = tmp_path / "p.edgepack"
    assemble_pack(pack, [classifier[0]])
    options = {"warmup": 1, "min_count": 5, "min_duration_s": 0.0, "cold_starts": 0}
    benchmark(pack, progress=True, **options)
    assert "single-stream [" in capsys.readouterr().err
    benchmark(pack, **options)  # default: only when stderr is a terminal (here it is captured)
    assert capsys.readouterr().err == ""
    assert "about 12 s with the defaults" in benchmark.__doc__  # it says how long
