//! Progress of long commands on stderr.

use std::io::IsTerminal;

/// Progress of a long command on stderr: a bar on a terminal, else a line at every tenth (a
/// log or a pipe still shows that it moves).
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    what: &'static str,
    tenth: u64,
}

impl Progress {
    pub(crate) fn new(what: &'static str) -> Progress {
        Progress {
            bar: bar(),
            what,
            tenth: 0,
        }
    }

    pub(crate) fn set(&mut self, done: u64, total: u64) {
        match &self.bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(done);
            }
            None if total > 0 => {
                let tenth = done * 10 / total;
                if tenth > self.tenth {
                    self.tenth = tenth;
                    eprintln!("{}: {}% ({done}/{total})", self.what, tenth * 10);
                }
            }
            None => {}
        }
    }

    /// A line between steps (above the bar on a terminal).
    pub(crate) fn note(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    pub(crate) fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

pub(crate) fn bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} frames {elapsed}")
    {
        b.set_style(style.progress_chars("=> "));
    }
    Some(b)
}
