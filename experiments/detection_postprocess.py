"""Non-max suppression at SSD MobileNet's sizes on this host: the time a latency estimate leaves
out of a detection model. The cost summary counts such ops by the bytes they move and marks the
summary incomplete (compress/cost.py's NMS_NOTE), because their work depends on the scores.

Times, at one thread and side by side: TensorFlow Lite's TFLite_Detection_PostProcess (built here
as a one-op .tflite with the options TensorFlow's SSD export writes), fast (one pass over each
box's best class) and regular (one NMS per class), and ONNX's NonMaxSuppression (per class), at
10 and 100 detections, on random box encodings and sigmoid scores that all pass the exporter's
score threshold of 1e-8. Prints each median and what the cost summary says of the op.

    python -m experiments.detection_postprocess [--boxes 1917 --classes 90 --rounds 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import flatbuffers
import numpy as np
import onnx
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from flatbuffers import flexbuffers
from onnx import TensorProto, helper, numpy_helper

from .ort_qdq_int8 import interleaved_medians, session

SCORE_THRESHOLD, IOU_THRESHOLD = 1e-8, 0.6  # TensorFlow's SSD export (post_processing config)
DETECTIONS = (10, 100)


def _options(classes: int, detections: int, regular: bool) -> list[int]:
    """The op's flexbuffer options, named as TensorFlow's export_tflite_ssd_graph writes them."""
    fbb = flexbuffers.Builder()
    with fbb.Map():
        fbb.Int("max_detections", detections)
        fbb.Int("max_classes_per_detection", 1)
        fbb.Int("detections_per_class", detections)
        fbb.Bool("use_regular_nms", regular)
        fbb.Float("nms_score_threshold", SCORE_THRESHOLD)
        fbb.Float("nms_iou_threshold", IOU_THRESHOLD)
        fbb.Int("num_classes", classes)
        for scale, value in (("y_scale", 10.0), ("x_scale", 10.0), ("h_scale", 5.0),
                             ("w_scale", 5.0)):  # fmt: skip
            fbb.Float(scale, value)
    return list(fbb.Finish())


def anchors(boxes: int, seed: int = 0) -> np.ndarray:
    """(boxes, 4) anchors as the op reads them: centre y, centre x, height, width."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0, 1, (boxes, 2))
    size = rng.uniform(0.05, 0.9, (boxes, 2))
    return np.concatenate([centre, size], 1).astype(np.float32)


def detection_postprocess_tflite(boxes: int, classes: int, detections: int, regular: bool) -> bytes:
    """A .tflite of one TFLite_Detection_PostProcess: box encodings (1, boxes, 4) and scores
    (1, boxes, classes + 1, background first) in; boxes, classes, scores and count out."""
    model = schema.ModelT()
    model.version, model.description = 3, b"TFLite_Detection_PostProcess"
    anchor_buffer = schema.BufferT()
    anchor_buffer.data = list(anchors(boxes).tobytes())
    model.buffers = [schema.BufferT(), anchor_buffer] + [schema.BufferT() for _ in range(6)]

    def tensor(name: str, shape: tuple[int, ...], buffer: int) -> schema.TensorT:
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), list(shape), 0, buffer  # 0: FLOAT32
        return t

    graph = schema.SubGraphT()
    graph.tensors = [
        tensor("box_encodings", (1, boxes, 4), 2),
        tensor("class_predictions", (1, boxes, classes + 1), 3),
        tensor("anchors", (boxes, 4), 1),
        tensor("detection_boxes", (1, detections, 4), 4),
        tensor("detection_classes", (1, detections), 5),
        tensor("detection_scores", (1, detections), 6),
        tensor("num_detections", (1,), 7),
    ]
    graph.inputs, graph.outputs = [0, 1], [3, 4, 5, 6]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3, 4, 5, 6]
    op.customOptions = _options(classes, detections, regular)
    op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    graph.operators = [op]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode, code.version = b"TFLite_Detection_PostProcess", 1
    model.subgraphs, model.operatorCodes = [graph], [code]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def nms_onnx(boxes: int, classes: int, per_class: int) -> onnx.ModelProto:
    """ONNX NonMaxSuppression over (1, boxes, 4) corners and (1, classes, boxes) scores."""
    inits = [
        numpy_helper.from_array(np.array([per_class], np.int64), "max_per_class"),
        numpy_helper.from_array(np.array([IOU_THRESHOLD], np.float32), "iou"),
        numpy_helper.from_array(np.array([SCORE_THRESHOLD], np.float32), "score_threshold"),
    ]
    graph = helper.make_graph(
        [helper.make_node("NonMaxSuppression",
                          ["boxes", "scores", "max_per_class", "iou", "score_threshold"],
                          ["selected"])],
        "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, boxes, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, classes, boxes])],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, ["selected", 3])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def scores(boxes: int, classes: int, seed: int = 1) -> np.ndarray:
    """(boxes, classes) sigmoid scores, mostly low, as a detector's are: all pass 1e-8."""
    logits = np.random.default_rng(seed).normal(-4.0, 2.0, (boxes, classes))
    return (1 / (1 + np.exp(-logits))).astype(np.float32)


def tflite_inputs(boxes: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The op's two inputs: random box encodings, and scores() behind a background column."""
    encodings = np.random.default_rng(2).normal(0, 1, (1, boxes, 4)).astype(np.float32)
    background = np.zeros((boxes, 1), np.float32)
    return encodings, np.concatenate([background, scores(boxes, classes)], 1)[None]


def _corners(boxes: int) -> np.ndarray:
    a = anchors(boxes)
    return np.concatenate([a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2], 1)[None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boxes", type=int, default=1917, help="SSD MobileNet v2 at 300x300")
    parser.add_argument("--classes", type=int, default=90, help="COCO, without background")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    from edgepack.compress.cost import cost_summary, tflite_cost_summary

    feed = tflite_inputs(args.boxes, args.classes)
    onnx_feed = {"boxes": _corners(args.boxes), "scores": feed[1][0, :, 1:].T[None].copy()}
    runs, summaries = {}, {}
    with tempfile.TemporaryDirectory() as work:
        for detections in DETECTIONS:
            for regular in (False, True):
                kind = "regular" if regular else "fast"
                name = f"TFLite_Detection_PostProcess {kind} {detections}"
                path = Path(work) / f"{len(runs)}.tflite"
                path.write_bytes(
                    detection_postprocess_tflite(args.boxes, args.classes, detections, regular)
                )
                interpreter = Interpreter(model_path=str(path), num_threads=1)
                interpreter.allocate_tensors()
                for detail, tensor in zip(interpreter.get_input_details(), feed, strict=True):
                    interpreter.set_tensor(detail["index"], tensor)
                runs[name], summaries[name] = interpreter.invoke, tflite_cost_summary(path)
            name = f"NonMaxSuppression per-class {detections}"
            path = Path(work) / f"{len(runs)}.onnx"
            onnx.save(nms_onnx(args.boxes, args.classes, detections), path)
            nms = session(path, 1)
            runs[name] = lambda nms=nms: nms.run(None, onnx_feed)
            summaries[name] = cost_summary(path)
        medians = interleaved_medians(runs, args.rounds)
    print(f"{args.boxes} boxes x {args.classes} classes, 1 thread, median of {args.rounds}")
    print(f"{'op':<42}{'ms':>10}  cost summary")
    for name, seconds in medians.items():
        summary = summaries[name]
        rows = ", ".join(f"{r['op_class']} {r['bytes'] / 1e6:.2f} MB" for r in summary["ops"])
        complete = "incomplete" if summary.get("complete") is False else "complete"
        print(f"{name:<42}{seconds * 1e3:>10.3f}  {rows}; {complete}")


if __name__ == "__main__":
    main()
