"""edgepack.cli"""
