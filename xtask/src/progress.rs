//! Progress output for long work (a spinner on a terminal, plain lines otherwise).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner with a message; on a non-terminal it prints the message once instead.
pub fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if bar.is_hidden() {
        eprintln!("    {message} ...");
    }
    bar.set_style(
        ProgressStyle::with_template("    {spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
