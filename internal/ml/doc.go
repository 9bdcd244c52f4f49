// Package ml runs machine-learning models as the platform runs them: a
// model is ONNX bytes plus a document (Meta) that says what it takes,
// what it gives and what it may cost; a Runtime loads the pair after
// checking one against the other, and a Session infers within a
// deadline. TrainPCA makes the baseline anomaly model at the hub in pure
// Go. The package owns the model document, the runtime interface, the
// pure-Go ONNX runtime (gonnx) and that training; it does not (yet) own
// storing models, shipping them to edges, or filling a loop's score map
// (Result.Scores gives the map a loop's CEL sees as score).
//
// # The model document
//
// Meta is JSON; ParseMeta refuses unknown fields and reports every
// problem with its field:
//
//	{
//	  "id": "spindle-anomaly", "version": 2, "kind": "anomaly",
//	  "input": "features",
//	  "inputs": [{"name": "vib_mean", "mean": 0.42, "std": 0.1},
//	             {"name": "temp", "mean": 61.5, "std": 4.2}],
//	  "outputs": [{"name": "score", "kind": "score"}],
//	  "thresholds": {"anomaly": {"output": "score", "above": 3.2}},
//	  "budget": {"max_model_bytes": 65536, "max_nodes": 16, "deadline": "20ms"},
//	  "training": {"dataset": "cnc-a-2026w01", "dataset_version": "3",
//	               "vectors": 100000, "metrics": {"explained_variance": 0.97},
//	               "created_at": "2026-01-02T03:04:05Z", "method": "pca"}
//	}
//
// kind is "anomaly" for now. input names the graph's one input tensor;
// inputs are the features in the order of its last axis, named as a loop
// names them (a CEL identifier), with their mean and standard deviation
// in the training vectors. Normalisation is inside the graph: the runtime
// passes features raw, and mean and std say what the graph does (for
// people and drift checks; Load runs one trial inference on the means).
// An output is a "score" (one number) or a "class" (one number per
// class; Result.Scores gives the index of the largest). A threshold is
// crossed when its score output is above the level; its name is a key of
// the scores beside the outputs' (1 crossed, 0 not). budget bounds the
// model file, the graph's nodes and an inference's time (at most
// MaxModelBytesLimit, MaxNodesLimit, MaxDeadline). training says where
// the model comes from.
//
// # The graph TrainPCA builds
//
// TrainPCA standardises each feature by its mean and sample standard
// deviation, takes the eigenvectors of the correlation matrix, keeps k
// components (given, or the fewest that reach a share of the variance,
// 0.95 by default) and writes, in doubles, opset 13:
//
//	z     = (features − mean) / std     Sub, Div      [1,n]
//	t     = z · P                        MatMul        [1,k]   P: n×k components
//	zhat  = t · Pᵀ                       MatMul        [1,n]
//	r     = z − zhat                     Sub           [1,n]
//	score = (r ⊙ r) · 1                  Mul, MatMul   [1,1]   sum of squares
//
// gonnx has no ReduceSum: the sum is a product with a column of ones.
// The score is the squared distance of the standardised vector from the
// principal subspace: high for a vector that breaks the correlations of
// the training data even when every feature is in its usual range. The
// threshold "anomaly" is the 0.99 quantile (nearest rank) of the training
// vectors' scores times a margin of 1.5 (both options), so about none of
// the training vectors is flagged (metric train_flagged) and a vector must
// be clearly further out than the training data's tail. The metrics say
// the components kept, the variance they explain, the median and
// quantile of the training scores and the share flagged. A constant
// feature is refused (its std is 0), as is keeping every component (the
// score would always be 0).
//
// # The runtime
//
// Runtime is the interface; NewGonnx is the pure-Go one, built everywhere
// (CGO_ENABLED=0, amd64, arm64, riscv64). Another runtime goes in its own
// file behind a build tag. Load refuses, with the reason (wrapping
// ErrRefused): bytes over budget.max_model_bytes, bytes that are not an
// ONNX model, an opset other than 13, more nodes than budget.max_nodes, an
// operator gonnx does not run (named, with its node), external data,
// sparse initializers, local functions, an initializer whose values do
// not fill its dims, a graph input other than the one named by input
// (float or double, shape [n] or [1,n] with n the number of features, the
// first dimension possibly dynamic), graph outputs other than the Meta's,
// a score output of more than one number, and a model whose trial
// inference fails. A panic inside gonnx is turned into an error.
//
// gonnx runs synchronously and cannot be interrupted, so a session runs
// inferences on one goroutine it owns (started by Load, stopped by Close,
// which waits for a run under way). One inference at a time: concurrent
// callers wait their turn. Infer returns by the earlier of its context's
// deadline and budget.deadline, whether it was still waiting for its turn
// or its run was under way, with an error wrapping
// context.DeadlineExceeded (or context.Canceled); an expired context
// returns at once. A run whose caller has gone ends on the session's
// goroutine and its result is dropped; the next caller waits for it, each
// within its own deadline. NaN and infinite features are refused
// (ErrInput), as is a vector of the wrong length.
//
// # Bringing a model trained elsewhere
//
// Export it to ONNX with opset 13 (for example skl2onnx or
// torch.onnx.export with target opset 13), using only the operators gonnx
// runs: Abs, Acos, Acosh, Add, And, Asin, Asinh, Atan, Atanh, Cast,
// Concat, Constant, ConstantOfShape, Conv, Cos, Cosh, Div, Equal,
// Flatten, GRU, Gather, Gemm, Greater, GreaterOrEqual, LSTM, Less,
// LessOrEqual, LinearRegressor, MatMul, Mul, Not, Or, PRelu, RNN, Relu,
// Reshape, Scaler, Shape, Sigmoid, Sin, Sinh, Slice, Softmax, Squeeze,
// Sub, Tan, Tanh, Transpose, Unsqueeze, Xor ((*Gonnx).SupportedOperators). Notably
// absent: Identity, Reduce*, Sqrt, Pow, Exp, Log, Min, Max, Clip, Where,
// ArgMax, BatchNormalization and the tree ensembles; fold them away or
// rewrite them (a sum as a MatMul with ones). Give the graph one float or
// double input of shape [1,n] with normalisation inside the graph (Sub
// and Div, or Scaler), and outputs whose names the Meta lists. Then
// write the Meta: the input's name, the features in order with their
// training mean and std, the outputs and their kinds, the thresholds, a
// budget that fits the edge, and the training facts. Load says what does
// not fit.
package ml
