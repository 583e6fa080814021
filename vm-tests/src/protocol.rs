//! The lines the guest prints on the serial console for the host harness (`cargo xtask
//! vm-test`, `demo`, `bench`) to read: one typed [`Line`], written with `Display` in the
//! guest and read back with [`Line::parse`] on the host. Every line starts with a marker,
//! so kernel and agent output around it is ignored.

use std::fmt;

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde::{Deserialize, Serialize};

const KERNEL: &str = "@@RAMPART-KERNEL ";
const PLAN: &str = "@@RAMPART-PLAN ";
const RESULT: &str = "@@RAMPART-RESULT ";
const END: &str = "@@RAMPART-END";
const DEMO_SAY: &str = "@@RAMPART-DEMO ";
const DEMO_FILE: &str = "@@RAMPART-FILE ";
const DEMO_END: &str = "@@RAMPART-DEMO-END ";
const BENCH: &str = "@@RAMPART-BENCH ";

/// The prefix the guest's `/init` prints before `uname -r` (it is a shell script, so it
/// cannot use [`Line`]).
pub const KERNEL_MARKER: &str = KERNEL;

/// How a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The kernel did what the scenario expects.
    Pass,
    /// It did not (or the scenario could not run where it should).
    Fail,
    /// The kernel lacks what the scenario needs; the detail says what.
    Skip,
}

/// One scenario's result, with a one-line explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// The scenario's name.
    pub scenario: String,
    /// How it ended.
    pub outcome: Outcome,
    /// What it saw (pass), what went wrong (fail), or why it could not run (skip).
    pub detail: String,
}

/// The scenario whose lineage, bundles and proofs the host checks again after the boot.
pub const EVIDENCE_SCENARIO: &str = "replay-recomputes-every-decision-proofs-verify-offline";
/// The name prefix of the files it ships (as [`Line::DemoFile`]).
pub const EVIDENCE_PREFIX: &str = "evidence/";

/// The scenario whose scraped `/metrics` the host checks again with promtool.
pub const CONSOLE_SCENARIO: &str = "console-metrics-and-readyz-match-the-lineage";
/// The name prefix of the files it ships.
pub const CONSOLE_PREFIX: &str = "console/";

/// One protocol line.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// The guest kernel's release (`uname -r`).
    Kernel(String),
    /// The scenarios the guest will run, in order.
    Plan(Vec<String>),
    /// One scenario's result.
    Result(ScenarioResult),
    /// Every scenario has reported.
    End,
    /// `demo`: a line of the story, shown to the user as it is.
    DemoSay(String),
    /// `demo` (and the evidence scenario): a file for the host.
    DemoFile {
        /// Its path below `target/demo/`.
        name: String,
        /// Its content.
        bytes: Vec<u8>,
    },
    /// `demo`: the last line: the story ran to the end, or why not.
    DemoEnd(Result<(), String>),
    /// `bench`: the guest's results (its last line).
    Bench(serde_json::Value),
}

/// A line that starts with a marker but does not carry what the marker promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The marker the line starts with.
    pub marker: &'static str,
    /// What is wrong with the rest.
    pub reason: String,
    /// The whole line.
    pub line: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed {} line ({}): {}",
            self.marker.trim(),
            self.reason,
            self.line
        )
    }
}

impl std::error::Error for ParseError {}

impl Line {
    /// Reads one console line: `None` when it is not a protocol line.
    pub fn parse(line: &str) -> Option<Result<Self, ParseError>> {
        let line = line.trim_end_matches(['\r', '\n']);
        let bad = |marker: &'static str, reason: String| ParseError {
            marker,
            reason,
            line: line.to_owned(),
        };
        fn from_json<T: serde::de::DeserializeOwned>(
            marker: &'static str,
            text: &str,
            line: &str,
        ) -> Result<T, ParseError> {
            serde_json::from_str(text).map_err(|e| ParseError {
                marker,
                reason: e.to_string(),
                line: line.to_owned(),
            })
        }
        // Longer markers first: DEMO_END starts like DEMO_SAY's family.
        Some(if let Some(rest) = line.strip_prefix(DEMO_END) {
            Ok(Self::DemoEnd(match rest.trim() {
                "ok" => Ok(()),
                other => Err(other.strip_prefix("failed: ").unwrap_or(other).to_owned()),
            }))
        } else if let Some(rest) = line.strip_prefix(KERNEL) {
            Ok(Self::Kernel(rest.trim().to_owned()))
        } else if let Some(rest) = line.strip_prefix(PLAN) {
            from_json(PLAN, rest, line).map(Self::Plan)
        } else if let Some(rest) = line.strip_prefix(RESULT) {
            from_json(RESULT, rest, line).map(Self::Result)
        } else if line.trim() == END {
            Ok(Self::End)
        } else if let Some(rest) = line.strip_prefix(DEMO_SAY) {
            Ok(Self::DemoSay(rest.to_owned()))
        } else if let Some(rest) = line.strip_prefix(DEMO_FILE) {
            match rest.split_once(' ') {
                Some((name, data)) => B64
                    .decode(data.trim())
                    .map(|bytes| Self::DemoFile {
                        name: name.to_owned(),
                        bytes,
                    })
                    .map_err(|e| bad(DEMO_FILE, format!("file {name}: {e}"))),
                None => Err(bad(DEMO_FILE, "expected `NAME BASE64`".into())),
            }
        } else if let Some(rest) = line.strip_prefix(BENCH) {
            from_json(BENCH, rest, line).map(Self::Bench)
        } else {
            return None;
        })
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kernel(release) => write!(f, "{KERNEL}{release}"),
            Self::Plan(names) => write!(f, "{PLAN}{}", json(names)),
            Self::Result(r) => write!(f, "{RESULT}{}", json(r)),
            Self::End => f.write_str(END),
            Self::DemoSay(text) => write!(f, "{DEMO_SAY}{text}"),
            Self::DemoFile { name, bytes } => write!(f, "{DEMO_FILE}{name} {}", B64.encode(bytes)),
            Self::DemoEnd(Ok(())) => write!(f, "{DEMO_END}ok"),
            Self::DemoEnd(Err(why)) => write!(f, "{DEMO_END}failed: {why}"),
            Self::Bench(v) => write!(f, "{BENCH}{v}"),
        }
    }
}

/// JSON for `Display`, which cannot fail: a value that does not serialise (none of ours
/// can) is written as a JSON string saying so, which the host then reports.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|e| format!("\"unserialisable protocol value: {e}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Line> {
        vec![
            Line::Kernel("6.12.57+deb12-amd64".into()),
            Line::Plan(vec!["a".into(), "b-c".into()]),
            Line::Result(ScenarioResult {
                scenario: "exec-x".into(),
                outcome: Outcome::Skip,
                detail: "needs \"bpf\" in lsm=\n(second line)".into(),
            }),
            Line::End,
            Line::DemoSay("  step 1: sign".into()),
            Line::DemoFile {
                name: "lineage/segment-00000000.jsonl".into(),
                bytes: b"{\"seq\":0}\n\x00\xff".to_vec(),
            },
            Line::DemoEnd(Ok(())),
            Line::DemoEnd(Err("guest set-up: no cgroup2".into())),
            Line::Bench(serde_json::json!({"error": "x", "rounds": [1, 2]})),
        ]
    }

    #[test]
    fn every_line_reads_back_as_written() {
        for line in every_kind() {
            let text = line.to_string();
            assert!(!text.contains('\n'), "one console line: {text:?}");
            assert_eq!(Line::parse(&text), Some(Ok(line.clone())), "{text}");
            assert_eq!(Line::parse(&format!("{text}\r")), Some(Ok(line)));
        }
    }

    #[test]
    fn other_console_output_is_not_a_line() {
        for text in [
            "",
            "[    1.2] Linux version 6.1",
            "RAMPART-END",
            " @@RAMPART-END x",
        ] {
            assert_eq!(Line::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_marked_line_with_a_bad_payload_is_an_error_not_ignored() {
        for text in [
            "@@RAMPART-PLAN [unterminated",
            "@@RAMPART-RESULT {\"scenario\":\"x\"}",
            "@@RAMPART-FILE only-a-name",
            "@@RAMPART-FILE f not*base64",
            "@@RAMPART-BENCH {",
        ] {
            let parsed = Line::parse(text);
            assert!(matches!(parsed, Some(Err(_))), "{text}: {parsed:?}");
        }
    }
}
