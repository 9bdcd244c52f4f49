#!/usr/bin/env python3
"""Trains spindle-fault, a model made outside wanwu, and exports it for it.

A small MLP classifier (8 -> 16 ReLU -> 4 softmax) of CNC spindle reports,
trained with numpy alone on synthetic data (fixed seed) and written with
onnx.helper as an ONNX model of opset 13 that wanwu's runtime (gonnx) runs,
with its model document (Meta). docs/MODELS.md walks through it.

    /usr/bin/python3 examples/models/ml/train.py     # Debian: python3-numpy python3-onnx

writes, next to this script:
    spindle-fault.onnx         the model
    spindle-fault.meta.json    its Meta (internal/ml/meta.go)
    spindle-fault.inputs.json  rows to check it on, with the class drawn
Then reference.mjs writes spindle-fault.reference.json (what onnxruntime
outputs for the rows) and `go test -run TestExampleModels ./internal/ml/`
compares wanwu's runtime with it.

The features are the demo's spindle loop's (examples/loops/spindle-anomaly.yaml):
feed (%), amps (A), temp (Cel), vib_rms, crest, band_low, band_mid,
band_high (m/s2). The data is a stand-in loosely shaped like the
simulator's spindles, not their physics: load follows the feed; bearing
wear raises the mid band, the crest factor and the temperature; chatter the
high band and the current; imbalance the low band, each by a severity
drawn from 0.05 to 1, so that the mildest faults overlap normal running.
"""

import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "spindle-fault"
SEED = 2026
FEATURES = ["feed", "amps", "temp", "vib_rms", "crest", "band_low", "band_mid", "band_high"]
CLASSES = ["normal", "bearing_wear", "chatter", "imbalance"]
HIDDEN = 16


def draw(rng, m):
    """m reports and their classes: 60 % normal, the rest one fault each."""
    cls = rng.choice(len(CLASSES), size=m, p=[0.6, 0.4 / 3, 0.4 / 3, 0.4 / 3])
    feed = rng.uniform(55, 100, m)
    load = feed / 100 * rng.uniform(0.85, 1.0, m)
    amps = 2.5 + 9 * load + rng.normal(0, 0.15, m)
    temp = 28 + 14 * load + rng.uniform(-3, 3, m) + rng.normal(0, 1.2, m)
    low = 0.4 + 0.5 * load + rng.normal(0, 0.05, m)
    mid = 0.5 + 0.6 * load + rng.normal(0, 0.06, m)
    high = 0.3 + 0.4 * load + rng.normal(0, 0.05, m)
    crest = 3.0 + rng.normal(0, 0.2, m)
    sev = rng.uniform(0.05, 1.0, m)
    bearing, chatter, imbalance = (cls == 1) * sev, (cls == 2) * sev, (cls == 3) * sev
    mid += 0.8 * bearing
    crest += 1.0 * bearing + 0.3 * chatter
    temp += 3 * bearing
    high += 0.9 * chatter
    amps += 0.5 * chatter
    low += 1.0 * imbalance
    low, mid, high = (np.maximum(b, 0.01) for b in (low, mid, high))
    rms = np.sqrt(low**2 + mid**2 + high**2) * (1 + rng.normal(0, 0.02, m))
    x = np.stack([feed, amps, temp, rms, crest, low, mid, high], axis=1)
    # Reported as the devices report them: to the hundredth.
    return np.round(x, 2), cls


def forward(params, z):
    w1, b1, w2, b2 = params
    h = np.maximum(z @ w1 + b1, 0)
    logits = h @ w2 + b2
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return h, e / e.sum(axis=1, keepdims=True)


def train(z, y, rng, epochs=1500, lr=0.01, l2=1e-4):
    """Full-batch Adam on the cross-entropy."""
    n, k = z.shape[1], len(CLASSES)
    params = [
        rng.normal(0, np.sqrt(2 / n), (n, HIDDEN)),
        np.zeros(HIDDEN),
        rng.normal(0, np.sqrt(2 / HIDDEN), (HIDDEN, k)),
        np.zeros(k),
    ]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    onehot = np.eye(k)[y]
    for t in range(1, epochs + 1):
        h, p = forward(params, z)
        d = (p - onehot) / len(z)
        dw2 = h.T @ d + l2 * params[2]
        db2 = d.sum(axis=0)
        dh = (d @ params[2].T) * (h > 0)
        dw1 = z.T @ dh + l2 * params[0]
        db1 = dh.sum(axis=0)
        for i, g in enumerate([dw1, db1, dw2, db2]):
            m1[i] = 0.9 * m1[i] + 0.1 * g
            m2[i] = 0.999 * m2[i] + 0.001 * g * g
            params[i] -= lr * (m1[i] / (1 - 0.9**t)) / (np.sqrt(m2[i] / (1 - 0.999**t)) + 1e-8)
    return params


def export(params, mean, std):
    """The graph, in floats, opset 13, only operators gonnx runs:

    z       = (features - mean) / std     Sub, Div     [1,8]
    h       = relu(z W1 + b1)             Gemm, Relu   [1,16]
    class   = softmax(h W2 + b2)          Gemm, Softmax [1,4]
    p_fault = class . [0,1,1,1]           MatMul       [1,1]

    p_fault is 1 - P(normal) written as a sum: gonnx has no ReduceSum.
    """
    w1, b1, w2, b2 = params
    f32 = lambda name, a: numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)
    init = [
        f32("mean", mean),
        f32("std", std),
        f32("w1", w1),
        f32("b1", b1),
        f32("w2", w2),
        f32("b2", b2),
        f32("fault_classes", [[0.0], [1.0], [1.0], [1.0]]),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centered"], name="center"),
        helper.make_node("Div", ["centered", "std"], ["z"], name="scale"),
        helper.make_node("Gemm", ["z", "w1", "b1"], ["y1"], name="dense1"),
        helper.make_node("Relu", ["y1"], ["h"], name="relu1"),
        helper.make_node("Gemm", ["h", "w2", "b2"], ["logits"], name="dense2"),
        helper.make_node("Softmax", ["logits"], ["class"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["class", "fault_classes"], ["p_fault"], name="fault"),
    ]
    graph = helper.make_graph(
        nodes,
        NAME,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, len(FEATURES)])],
        [
            helper.make_tensor_value_info("p_fault", TensorProto.FLOAT, [1, 1]),
            helper.make_tensor_value_info("class", TensorProto.FLOAT, [1, len(CLASSES)]),
        ],
        initializer=init,
    )
    model = helper.make_model(
        graph,
        producer_name="examples/models/ml/train.py",
        producer_version="1",
        opset_imports=[helper.make_opsetid("", 13)],
        doc_string="spindle-fault v1: MLP 8-16-4 of spindle reports; class: " + ", ".join(CLASSES),
    )
    model.ir_version = 7  # opset 13's; what older runtimes read too
    helper.set_model_props(model, {"classes": ",".join(CLASSES)})
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    rng = np.random.default_rng(SEED)
    x, y = draw(rng, 6000)
    xt, yt = draw(rng, 2000)
    mean, std = x.mean(axis=0), x.std(axis=0, ddof=1)
    params = train((x - mean) / std, y, rng)

    def scores(xs):
        _, p = forward(params, (xs - mean) / std)
        return p

    p, pt = scores(x), scores(xt)
    fault_t = 1 - pt[:, 0]
    metrics = {
        "train_accuracy": float((p.argmax(axis=1) == y).mean()),
        "test_accuracy": float((pt.argmax(axis=1) == yt).mean()),
        "test_vectors": len(xt),
        "test_fault_recall": float((fault_t[yt != 0] > 0.5).mean()),
        "test_false_alarms": float((fault_t[yt == 0] > 0.5).mean()),
    }
    metrics = {k: round(v, 4) for k, v in metrics.items()}
    model = export(params, mean, std)
    data = model.SerializeToString()

    meta = {
        "id": NAME,
        "version": 1,
        "kind": "anomaly",
        "input": "features",
        "inputs": [{"name": f, "mean": float(m), "std": float(s)} for f, m, s in zip(FEATURES, mean, std)],
        "outputs": [{"name": "p_fault", "kind": "score"}, {"name": "class", "kind": "class"}],
        "thresholds": {"fault": {"output": "p_fault", "above": 0.5}},
        "budget": {"max_model_bytes": 16384, "max_nodes": 16, "deadline": "10ms"},
        "training": {
            "dataset": "synthetic-spindle-faults",
            "dataset_version": "seed-%d" % SEED,
            "vectors": len(x),
            "metrics": metrics,
            "created_at": "2026-12-07T00:00:00Z",
            "method": "mlp 8-16-4 softmax, numpy, examples/models/ml/train.py; class: " + ", ".join(
                "%d %s" % (i, c) for i, c in enumerate(CLASSES)
            ),
        },
    }
    # The check rows: 8 of each class, from a generator of their own.
    rows, labels = [], []
    rr = np.random.default_rng(SEED + 1)
    while min(labels.count(c) for c in range(len(CLASSES))) < 8:
        xr, yr = draw(rr, 1)
        if labels.count(int(yr[0])) < 8:
            rows.append([float(v) for v in xr[0]])
            labels.append(int(yr[0]))
    inputs = {
        "input": "features",
        "dtype": "float32",
        "shape": [1, len(FEATURES)],
        "outputs": ["p_fault", "class"],
        "rows": rows,
        "labels": labels,
    }

    with open(os.path.join(HERE, NAME + ".onnx"), "wb") as f:
        f.write(data)
    for suffix, doc in ((".meta.json", meta), (".inputs.json", inputs)):
        with open(os.path.join(HERE, NAME + suffix), "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    print("wrote %s.onnx (%d bytes), %s.meta.json, %s.inputs.json (%d rows)" % (NAME, len(data), NAME, NAME, len(rows)))
    print("metrics: " + ", ".join("%s %s" % kv for kv in metrics.items()))
    print("now: node reference.mjs <dir with node_modules/onnxruntime-node>, then go test -run TestExampleModels ./internal/ml/")


if __name__ == "__main__":
    main()
