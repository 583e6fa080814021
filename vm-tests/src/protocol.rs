//! The lines the guest prints on the serial console for the host harness (`cargo xtask
//! vm-test`) to read. Every line starts with a marker so kernel and agent output around
//! it is ignored.

use serde::{Deserialize, Serialize};

/// Prefix of a line carrying the planned scenario names (JSON array).
pub const PLAN: &str = "@@RAMPART-PLAN ";
/// Prefix of a line carrying one [`ScenarioResult`] (JSON).
pub const RESULT: &str = "@@RAMPART-RESULT ";
/// The whole line printed once every scenario has reported.
pub const END: &str = "@@RAMPART-END";

/// `cargo xtask demo`: a line of the story, shown to the user as it is.
pub const DEMO_SAY: &str = "@@RAMPART-DEMO ";
/// `cargo xtask demo`: a file for the host, `NAME BASE64`.
pub const DEMO_FILE: &str = "@@RAMPART-FILE ";
/// `cargo xtask demo`: the last line, `ok` or `failed: why`.
pub const DEMO_END: &str = "@@RAMPART-DEMO-END ";

/// `cargo xtask bench`: the guest's results (JSON), its last line.
pub const BENCH: &str = "@@RAMPART-BENCH ";

/// How a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// One scenario's result, with a one-line explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub outcome: Outcome,
    pub detail: String,
}
