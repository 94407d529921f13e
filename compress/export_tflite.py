"""Export a PyTorch module to a LiteRT (.tflite) file: fp32, dynamic-range int8 or full int8.

Every file is checked through edgepack.runtime against the PyTorch module before it is kept.
"""

from __future__ import annotations

import importlib
import inspect
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from edgepack.compress.errors import ExportError, QuantizationError
from edgepack.packing import assemble_pack, describe_model_file
from edgepack.runtime import InputError, TensorSpec, default_threads, load
from edgepack.runtime.manifest import ModelEntry

TFLiteQuantization = Literal["none", "dynamic", "full"]
FullInt8Method = Literal["auto", "pt2e", "quantizer"]

PRECISIONS: dict[str, str] = {"none": "fp32", "dynamic": "int8-dynamic", "full": "int8-full"}
SIGNATURE = "serving_default"  # the signature litert-torch gives a single-signature model
_INSTALL_HINT = "pip install 'edgepack[convert]'"


@dataclass(frozen=True)
class TFLiteExport:
    """What export_tflite wrote, and what a pack manifest needs to bind and check it.

    input_names/output_names map the interpreter's tensor names (serving_default_args_0) to the
    logical names (input_ids); inputs/outputs carry dtype, shape and int8 scale/zero_point as the
    interpreter reports them, already named for a manifest. check has the manifest's `checks`
    shape: the file run through edgepack.runtime against the PyTorch module (argmax agreement
    of the first output in percent, as elsewhere in compress; max abs diff over all outputs).
    """

    path: Path
    quantization: str
    precision: str
    input_names: dict[str, str]
    output_names: dict[str, str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    size_bytes: int
    seconds: float
    check: dict[str, Any]
    full_int8_method: str | None = None
    # Argmax agreement (percent) of each full-int8 method tried, and why a method could not run.
    full_int8_agreement: dict[str, float] = field(default_factory=dict)
    full_int8_errors: dict[str, str] = field(default_factory=dict)


def export_tflite(
    module: torch.nn.Module,
    example_inputs: dict[str, torch.Tensor],
    path: str | os.PathLike[str],
    quantization: TFLiteQuantization = "none",
    representative_data: Iterable[dict[str, np.ndarray]] | None = None,
    full_int8_method: FullInt8Method = "auto",
    output_names: list[str] | None = None,
) -> TFLiteExport:
    """Convert `module` with litert-torch and write a .tflite file to `path`.

    quantization: "none" (fp32), "dynamic" (int8 weights, float activations: ai-edge-quantizer's
    dynamic_wi8_afp32; PT2E dynamic gives BERT an embedding table LiteRT refuses to load,
    "EMBEDDING_LOOKUP ... zero_point == 0") or "full" (int8 weights and activations, int8 I/O;
    needs representative_data). full_int8_method: "pt2e" (static PT2E quantization in torch,
    then convert), "quantizer" (ai-edge-quantizer's static_wi8_ai8 on the fp32 file) or "auto"
    (both; keep the higher argmax agreement with the fp32 module on representative_data, then
    the lower max abs diff).

    How inputs are named: the module is traced through a wrapper that takes the tensors
    positionally, in the order of `example_inputs`, and calls the module by keyword when every
    key is a parameter of its forward or it takes **kwargs (input_ids=..., as Hugging Face
    models need), else positionally, as export_onnx does. litert-torch names positional inputs
    args_N, so the file's tensors are serving_default_args_0, _1, ... in that order, and
    `input_names` maps them back. Passing sample_kwargs instead would name tensors after
    forward's parameters, tying the names to the module's code (x rather than pixels), and the
    signature would list them sorted by name, not in call order. Outputs are flattened the
    same way, to serving_default_output_N_output.

    What the file looks like: int64 inputs become int32 (enable_x64=False); the layout stays as
    in torch (NCHW); in a full-int8 file float inputs and outputs are int8, with the scale and
    zero_point in `inputs`/`outputs` (edgepack.runtime quantizes and dequantizes with them);
    integer inputs such as token ids stay int32.

    output_names: logical names of the outputs in order, after flattening tuples and dicts
    (a Hugging Face ModelOutput holding only logits is one output); default as export_onnx:
    "logits" for one output, else output_0, output_1, ...

    Every kept file is checked through edgepack.runtime against the module on
    representative_data (or on example_inputs when there is none). Work files stay in a
    temporary directory; `path` is written by renaming a complete file beside it.

    Raises ExportError naming the op and module path when litert-torch cannot lower an op, and
    QuantizationError when no full-int8 method works.

    >>> cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten()).eval()
    >>> pixels = {"pixels": torch.zeros(1, 1, 8, 8)}
    >>> result = export_tflite(cnn, pixels, "cnn.tflite")  # doctest: +SKIP
    >>> result.input_names  # doctest: +SKIP
    {'serving_default_args_0': 'pixels'}
    """
    start = time.perf_counter()
    path = Path(path)
    if quantization not in PRECISIONS:
        raise InputError(f"quantization must be one of {list(PRECISIONS)}, got {quantization!r}")
    if full_int8_method not in ("auto", *_FULL_INT8):
        raise InputError(
            f"full_int8_method must be 'auto', 'pt2e' or 'quantizer', got {full_int8_method!r}"
        )
    if not example_inputs:
        raise InputError("example_inputs is empty; expected a dict of input name -> tensor")
    samples = _representative_samples(representative_data, example_inputs)
    if quantization == "full" and not samples:
        raise InputError(
            "full int8 needs representative_data (a few hundred real inputs, as dicts of "
            f"{list(example_inputs)} -> arrays) to calibrate activation ranges"
        )
    samples = samples or [{k: v.detach().cpu().numpy() for k, v in example_inputs.items()}]

    was_training = module.training
    module.eval()
    try:
        wrapped = _PositionalModule(module, list(example_inputs))
        wrapped.training = False  # the wrapper only: the user's module keeps its own mode
        args = tuple(example_inputs.values())
        with torch.no_grad():
            names = _output_names(wrapped.call(*args), output_names)
        with tempfile.TemporaryDirectory(prefix="edgepack-tflite-") as work:
            job = _Job(wrapped, args, list(example_inputs), names, samples, Path(work))
            chosen, results, errors = _produce(job, quantization, full_int8_method)
            kept = results[chosen]
            data = kept.file.read_bytes()
            _write_atomically(data, path)
    finally:
        module.train(was_training)

    return TFLiteExport(
        path=path,
        quantization=quantization,
        precision=PRECISIONS[quantization],
        input_names=kept.input_names,
        output_names=kept.output_names,
        inputs=kept.entry.inputs,
        outputs=kept.entry.outputs,
        size_bytes=len(data),
        seconds=time.perf_counter() - start,
        check=kept.check,
        full_int8_method=chosen if quantization == "full" else None,
        full_int8_agreement=(
            {m: r.check["argmax_agreement"] for m, r in results.items()}
            if quantization == "full"
            else {}
        ),
        full_int8_errors=errors,
    )


class _PositionalModule(torch.nn.Module):
    """Takes the inputs positionally (litert-torch names them args_N) and returns a flat tuple."""

    def __init__(self, module: torch.nn.Module, names: list[str]):
        super().__init__()
        self.module = module
        self.names = names
        # The same rule as export_onnx: by keyword when forward takes those names (or **kwargs).
        parameters = inspect.signature(module.forward).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        self.by_keyword = takes_any or all(name in parameters for name in names)

    def call(self, *tensors: torch.Tensor) -> Any:
        if self.by_keyword:
            return self.module(**dict(zip(self.names, tensors, strict=True)))
        return self.module(*tensors)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _flat_outputs(self.call(*tensors))


def _flat_outputs(output: Any) -> tuple[torch.Tensor, ...]:
    """Tensors in the order litert-torch lays them out: tensor, tuple/list, or dict/ModelOutput."""
    if isinstance(output, torch.Tensor):
        return (output,)
    if isinstance(output, Mapping):  # includes Hugging Face ModelOutput
        output = [v for v in output.values() if v is not None]
    if not isinstance(output, (tuple, list)):
        raise ExportError(
            f"the module returns a {type(output).__name__}; TFLite export needs tensors, in a "
            "tuple, list or dict if several. Wrap the module so it returns tensors only."
        )
    return tuple(t for item in output for t in _flat_outputs(item))


def _output_names(output: Any, given: list[str] | None) -> list[str]:
    # The same defaults as export_onnx, so both files of a pack name their outputs alike.
    count = len(_flat_outputs(output))
    if given is None:
        return ["logits"] if count == 1 else [f"output_{i}" for i in range(count)]
    if len(given) != count:
        raise InputError(f"output_names has {len(given)} names; the module returns {count}")
    return list(given)


def _representative_samples(
    data: Iterable[dict[str, np.ndarray]] | None, example_inputs: dict[str, torch.Tensor]
) -> list[dict[str, np.ndarray]]:
    samples = []
    for i, sample in enumerate(data or ()):
        if set(sample) != set(example_inputs):
            raise InputError(
                f"representative sample {i} has inputs {sorted(sample)}; expected "
                f"{sorted(example_inputs)} as in example_inputs"
            )
        sample = {name: np.asarray(sample[name]) for name in example_inputs}
        for name, value in sample.items():
            want = tuple(example_inputs[name].shape)
            if value.shape != want:
                raise InputError(
                    f"representative sample {i}: input {name!r} has shape {value.shape}; the "
                    f"export is traced with static shapes, so it must be {want} like "
                    "example_inputs"
                )
        samples.append(sample)
    return samples


@dataclass
class _Candidate:
    """One converted file in the work directory, described and checked through the runtime."""

    file: Path
    entry: ModelEntry
    input_names: dict[str, str]
    output_names: dict[str, str]
    check: dict[str, Any]


@dataclass
class _Job:
    """One export's inputs and work directory, shared by the converters and the checks."""

    module: _PositionalModule
    args: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    samples: list[dict[str, np.ndarray]]
    work: Path
    references: list[list[np.ndarray]] = field(init=False)

    def __post_init__(self) -> None:
        # Taken before any quantizer sees the module, so every candidate meets the same fp32.
        with torch.no_grad():
            self.references = [
                [t.numpy() for t in self.module(*self.sample_args(s))] for s in self.samples
            ]

    def sample_args(self, sample: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
        return tuple(
            torch.as_tensor(sample[name]).to(arg.dtype)
            for name, arg in zip(self.input_names, self.args, strict=True)
        )

    @cached_property
    def fp32(self) -> bytes:
        return _convert(self.module, self.args)


def _produce(
    job: _Job, quantization: str, method: str
) -> tuple[str, dict[str, _Candidate], dict[str, str]]:
    """Make and check the candidate file(s); returns the chosen key, all candidates, failures."""
    if quantization == "none":
        return "fp32", {"fp32": _evaluate(job, job.fp32, "fp32", "fp32")}, {}
    if quantization == "dynamic":
        model = _dynamic_int8(job)
        return "dynamic", {"dynamic": _evaluate(job, model, "dynamic", "int8-dynamic")}, {}
    if method == "auto":
        # An op litert-torch cannot lower at all is an ExportError, not a reason to fall back.
        _ = job.fp32
    results: dict[str, _Candidate] = {}
    errors: dict[str, str] = {}
    for name in _FULL_INT8 if method == "auto" else [method]:
        try:
            model = _FULL_INT8[name](job)
        except (ExportError, QuantizationError) as exc:
            if method != "auto":
                raise
            errors[name] = str(exc)
            continue
        results[name] = _evaluate(job, model, name, "int8-full")
    if not results:
        raise QuantizationError(
            "no full-int8 method could quantize the module:\n"
            + "\n".join(f"  {name}: {why}" for name, why in errors.items())
            + "\nUse quantization='dynamic', or change the layers named above."
        )
    best = max(
        results,
        key=lambda n: (results[n].check["argmax_agreement"], -results[n].check["max_abs_diff"]),
    )
    return best, results, errors


def _evaluate(job: _Job, model: bytes, stem: str, precision: str) -> _Candidate:
    """Describe the file for a manifest, pack it, load it with edgepack.runtime and compare."""
    file = job.work / f"{stem}.tflite"
    file.write_bytes(model)
    inputs, outputs = _signature_tensor_names(model)
    input_names = {inputs[f"args_{i}"]: n for i, n in enumerate(job.input_names)}
    output_names = {outputs[f"output_{i}"]: n for i, n in enumerate(job.output_names)}
    entry = describe_model_file(file, precision=precision, names=input_names | output_names)
    pack = job.work / f"{stem}.pack"
    assemble_pack(pack, [(file, entry)], task="other")
    runtime_model = load(pack, backend="litert")

    max_diff, agree, total = 0.0, 0, 0
    first = job.output_names[0]
    for sample, reference in zip(job.samples, job.references, strict=True):
        got = runtime_model.run(sample)
        for name, expected in zip(job.output_names, reference, strict=True):
            max_diff = max(max_diff, float(np.max(np.abs(got[name] - expected))))
        same = got[first].argmax(-1) == reference[0].argmax(-1)
        agree, total = agree + int(same.sum()), total + same.size
    check = {
        "reference": "pytorch",
        "samples": len(job.samples),
        "max_abs_diff": max_diff,
        "argmax_agreement": 100.0 * agree / total,
    }
    return _Candidate(file, entry, input_names, output_names, check)


def _signature_tensor_names(model: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """Signature keys (args_0, output_0) -> the interpreter's tensor names, inputs and outputs."""
    interpreter = _require("ai_edge_litert.interpreter")
    runner = interpreter.Interpreter(model_content=model).get_signature_runner(SIGNATURE)
    inputs = {key: d["name"] for key, d in runner.get_input_details().items()}
    outputs = {key: d["name"] for key, d in runner.get_output_details().items()}
    return inputs, outputs


def _require(package: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise ExportError(
            f"TFLite export needs {package}, which is not installed: {_INSTALL_HINT}"
        ) from exc


def _convert(module: torch.nn.Module, args: tuple[torch.Tensor, ...], **options: Any) -> bytes:
    litert_torch = _require("litert_torch")
    try:
        return litert_torch.convert(module, args, **options).model_content()
    except Exception as exc:
        raise _conversion_error(exc) from exc


def _conversion_error(exc: Exception) -> ExportError:
    """Name the op and the module it came from, found on the FX node being lowered."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    node = _failing_node(exc)
    if node is None:
        return ExportError(f"litert-torch could not convert the module: {reason}")
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    module_path, module_type = stack[-1] if stack else ("", "")
    # Paths start at the wrapper, whose attribute `module` is the user's module.
    module_path = module_path.removeprefix("module").removeprefix(".")
    module_type = getattr(module_type, "__name__", str(module_type).rsplit(".", 1)[-1])
    where = f"module '{module_path}' ({module_type})" if module_path else "the top-level forward"
    return ExportError(
        f"litert-torch cannot lower op {node.target} in {where}: {reason}. Replace that op with "
        "one LiteRT supports, or ship the ONNX model only."
    )


def _failing_node(exc: BaseException) -> torch.fx.Node | None:
    # litert-torch lowers the graph with an FX interpreter; the innermost frame holding an op
    # node is the op that failed. Its metadata carries the nn.Module path.
    found = None
    tb = exc.__traceback__
    while tb is not None:
        node = tb.tb_frame.f_locals.get("node")
        if isinstance(node, torch.fx.Node) and node.op == "call_function":
            found = node
        tb = tb.tb_next
    return found


def _dynamic_int8(job: _Job) -> bytes:
    recipe = _require("ai_edge_quantizer.recipe")
    return _run_quantizer(job.fp32, recipe.dynamic_wi8_afp32())


def _full_int8_quantizer(job: _Job) -> bytes:
    recipe = _require("ai_edge_quantizer.recipe")
    return _run_quantizer(job.fp32, recipe.static_wi8_ai8(), _calibration_feeds(job))


def _run_quantizer(model: bytes, recipe: Any, calibration: dict | None = None) -> bytes:
    quantizer_module = _require("ai_edge_quantizer.quantizer")
    try:
        ranges = _calibrate(model, recipe, calibration) if calibration is not None else None
        quantizer = quantizer_module.Quantizer(model, recipe)
        quantized = quantizer.quantize(
            ranges, enable_progress_bar=False, enable_progress_report=False
        )
    except Exception as exc:
        raise QuantizationError(f"ai-edge-quantizer failed: {type(exc).__name__}: {exc}") from exc
    return bytes(quantized.quantized_model)


def _calibrate(model: bytes, recipe: Any, calibration: dict) -> dict:
    # Quantizer.calibrate keeps a moving average (0.95) of each sample's min/max. Our samples are
    # single inputs (the file has static shapes), so that average drifts to recent samples and
    # clips the rest: on a digits CNN it gave a max logit error of 7.9 against 0.2 with the
    # plain min/max over all samples used here, and 92% vs 99% argmax agreement on a tiny BERT.
    calibrator = _require("ai_edge_quantizer.calibrator")
    recipe_manager = _require("ai_edge_quantizer.recipe_manager")
    qsv_utils = _require("ai_edge_quantizer.utils.qsv_utils")
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe)
    calib = calibrator.Calibrator(
        model, num_threads=default_threads(), qsv_update_func=qsv_utils.min_max_update
    )
    calib.calibrate(calibration, manager)
    return calib.get_model_qsvs()


def _calibration_feeds(job: _Job) -> dict[str, list[dict[str, np.ndarray]]]:
    """The samples keyed by signature input (args_N), in the dtypes the fp32 file takes."""
    interpreter = _require("ai_edge_litert.interpreter")
    details = interpreter.Interpreter(model_content=job.fp32).get_signature_runner(SIGNATURE)
    dtypes = {key: d["dtype"] for key, d in details.get_input_details().items()}
    keys = [f"args_{i}" for i in range(len(job.input_names))]
    feeds = [
        {key: s[name].astype(dtypes[key]) for key, name in zip(keys, job.input_names, strict=True)}
        for s in job.samples
    ]
    return {SIGNATURE: feeds}


def _full_int8_pt2e(job: _Job) -> bytes:
    pt2e = _require("litert_torch.quantize.pt2e_quantizer")
    quant_config = _require("litert_torch.quantize.quant_config")
    quantize_pt2e = _require("torchao.quantization.pt2e.quantize_pt2e")
    quantizer = pt2e.PT2EQuantizer().set_global(
        pt2e.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )
    try:
        graph = torch.export.export(job.module, job.args).module()
        graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for sample in job.samples:
                graph(*job.sample_args(sample))
        graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise QuantizationError(
            f"PT2E static quantization failed ({reason}); use full_int8_method='quantizer', or "
            "'auto' to fall back to it"
        ) from exc
    config = quant_config.QuantConfig(pt2e_quantizer=quantizer)
    return _convert(graph, job.args, quant_config=config)


# How each full-int8 method makes its file; "auto" tries them in this order.
_FULL_INT8: dict[str, Callable[[_Job], bytes]] = {
    "pt2e": _full_int8_pt2e,
    "quantizer": _full_int8_quantizer,
}


def _write_atomically(data: bytes, dest: Path) -> None:
    # A named temp file beside dest (same filesystem, so the rename is atomic); opened with "xb"
    # rather than mkstemp so the file gets the usual umask permissions, not 0600.
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.partial")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
