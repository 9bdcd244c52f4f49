// Package dataset curates the data of the learning loop (capability C8,
// issue 21): windows of raw data captured around alarms, loop decisions and
// operators' requests, operators' labels of them, and dataset versions
// built from both, with quality scores, lineage and a content digest,
// exported as Parquet with a JSON manifest.
//
// # Windows
//
// A Window is the series of some of one object's properties over [From,
// To], the Stats of each property (Summary), and the features a loop
// decided on. AddWindow validates a window (the tenant a namespace, the
// object a code in it, a known reason, From ≤ To spanning at most MaxSpan
// (31 days), times between 1970 and 9999, at most MaxProperties properties,
// MaxPoints points and MaxFeatures features, every point within [From,
// To], at most one point per property and millisecond, finite values,
// plain names), normalises it
// (times in UTC at millisecond precision, points in time order), computes
// the Summary of every property that has a series and keeps the one given
// for a property that has none, and stores it.
//
// A window's id is "w-" and the first 16 hex digits of the SHA-256 of its
// canonical content: the JSON encoding (encoding/json; map keys sorted) of
// Schema, tenant, object, model, firmware, edge, reason, ref, loop, from
// and to in ms, classification, series, summary and features; not the
// capture time. Storing the same content again is therefore a no-op that
// returns the stored window (an edge may resend), and other content whose
// digest has the same first 64 bits is ErrConflict.
//
// Redact is how an edge keeps important and core data at home: it drops
// the series of the properties the edge may not share and keeps their
// summaries, so the hub learns the window's shape without its samples. The
// hub stores the redacted window under the id of its own content.
//
// ParseWindow decodes a window posted to the API: strict JSON (unknown
// members refused, one object, at most MaxWindowBytes) and AddWindow's
// validation.
//
// # Labels
//
// A Label is one actor's judgement of a window: true_positive,
// false_positive, normal, or class with a class name, and a note. Each
// actor has at most one current label per window; labelling again replaces
// it by a new row (the old one stays, pointing at its replacement), so that
// a built version keeps the labels it was built with. AddLabel is audited
// (dataset.labeled, subject the window id) in the same transaction.
//
// # Versions
//
// Build snapshots the windows a Query selects and their current labels as
// the next version (1, 2, …) of a named dataset: the version stores the
// window and label ids, so later labels change later versions only. It
// computes the lineage (the distinct objects, thing models, firmware,
// loops and edges, and the span), the quality scores below and the content
// digest, stores the Manifest and audits dataset.built (subject
// "<name>@<version>") in one transaction.
//
// The content digest (Manifest.ContentSHA256) is the hex SHA-256 of
//
//	wanwu.dataset/v1\n
//	window <id> <hex content digest> <captured at, unix ms>\n   for each window, in id order
//	label <canonical label>\n   for each label, by window id then actor
//
// where the canonical label is the JSON object {"window", "by", "at_ms",
// "kind", "class", "note"} in that order. Window ids come from content and
// labels are ordered by content, so the digest does not depend on the
// order things were stored in, and any changed value changes it.
//
// # Quality
//
// Each score is in [0, 1]; Quality also carries the counts each is a ratio
// of.
//
//   - Completeness = points present / points expected, over every series
//     of at least two points: a series' expected points are the window's
//     span divided by the series' median interval between consecutive
//     points, rounded (at least 1); its present points are its points, at
//     most the expected ones. A window that lost half its points to a gap
//     scores ½; one sampled at a steady slower rate scores 1 (the median
//     interval follows the rate). 1 when no series has two points.
//   - Timeliness = windows captured at most MaxCaptureDelay (1 min) after
//     their end / windows.
//   - LabelCoverage = windows with at least one label / windows.
//   - LabelAgreement = windows labelled by two or more actors whose labels
//     all say the same (same kind, and same class for kind class) /
//     windows labelled by two or more actors; 1 when there are none.
//   - ClassBalance = the entropy of the windows' majority labels (kind, or
//     class:<class>) divided by ln k, k the number of distinct majority
//     labels: 1 when they are equally frequent, 0 when k < 2. A window's
//     majority label is the one more of its labels give than any other;
//     a window with a tie has none.
//   - DuplicateRate = windows whose series (times and values of every
//     property) equal those of a window earlier in id order / windows;
//     windows without a series are never duplicates.
//
// # Export
//
// Export writes a version as a zip archive (entries stored, so a reader
// can seek in them; Parquet with zstd-compressed version 1 data pages):
//
//   - windows.parquet: one row per window: id, object, model, firmware,
//     edge, reason, ref, loop, from_ms, to_ms, captured_ms,
//     classification, raw, label (the majority label's kind, "" without
//     one), label_class, labels (how many), and one nullable DOUBLE column
//     "feature_<name>" per feature any window has;
//   - samples.parquet: one row per point: window_id, object, property,
//     time_ms, value;
//   - summaries.parquet: one row per window and property with a summary:
//     window_id, object, property, n, mean, min, max, std, raw (whether
//     the property's series is in samples.parquet);
//   - manifest.json: the Manifest, whose Files give each Parquet file's
//     SHA-256, rows and bytes.
//
// Times are milliseconds since the epoch, UTC. In Python:
//
//	z = zipfile.ZipFile("ds.zip")
//	windows = pd.read_parquet(z.open("windows.parquet"))
//	samples = pd.read_parquet(z.open("samples.parquet"))
//
// ParseManifest reads a manifest.json back strictly.
package dataset
