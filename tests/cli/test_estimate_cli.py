"""`edgepack estimate`, and its old name `edgepack predict` kept for one release."""

from __future__ import annotations

from edgepack.cli.main import main
from edgepack.packing import assemble_pack


def test_predict_is_a_deprecated_alias_of_estimate(tmp_path, classifier, capsys):
    bare = tmp_path / "bare.edgepack"
    assemble_pack(bare, [classifier[0]])  # no cost summary: the command stops before estimating
    assert main(["estimate", str(bare), "--profile", "rpi5"]) == 1
    err = capsys.readouterr().err
    assert "edgepack estimate: error: pack 'bare' has no cost summary" in err
    assert "deprecated" not in err
    assert main(["predict", str(bare), "--profile", "rpi5"]) == 1
    err = capsys.readouterr().err
    assert "edgepack predict: deprecated, use `edgepack estimate`" in err
    assert "has no cost summary" in err
