//! How text is decorated: colour and symbols on a terminal, plain ASCII when piped, so the same
//! renderer serves people and scripts.

use std::io::IsTerminal;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours.
    pub color: bool,
    /// Status symbols and box-drawing tree lines (otherwise ASCII only).
    pub symbols: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Color {
    Green,
    Yellow,
    Red,
    Blue,
    Grey,
}

impl Color {
    fn code(self) -> &'static str {
        match self {
            Color::Green => "32",
            Color::Yellow => "33",
            Color::Red => "31",
            Color::Blue => "34",
            Color::Grey => "90",
        }
    }
}

/// The glyphs drawing the tree's branches.
pub struct TreeGlyphs {
    pub branch: &'static str,
    pub last: &'static str,
    pub pipe: &'static str,
    pub blank: &'static str,
}

impl Style {
    /// Colour and symbols when stdout is a terminal (and colour is not turned off).
    pub fn for_stdout(no_color: bool) -> Style {
        let tty = std::io::stdout().is_terminal();
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: tty && !no_color && !no_color_env,
            symbols: tty,
        }
    }

    pub fn plain() -> Style {
        Style {
            color: false,
            symbols: false,
        }
    }

    pub fn fancy() -> Style {
        Style {
            color: true,
            symbols: true,
        }
    }

    fn paint(&self, text: &str, color: Color) -> String {
        if self.color {
            format!("\x1b[{}m{text}\x1b[0m", color.code())
        } else {
            text.to_owned()
        }
    }

    fn classify(status: &str) -> (&'static str, Color) {
        match status {
            "Healthy" | "Successful" | "Running" | "Succeeded" | "Completed" => ("✔", Color::Green),
            "Progressing" | "Pending" | "ContainerCreating" | "Terminating" => ("◌", Color::Yellow),
            "Paused" => ("॥", Color::Grey),
            "ScaledDown" => ("•", Color::Grey),
            "Inconclusive" => ("⚠", Color::Yellow),
            "Degraded" | "Failed" | "Error" | "CrashLoopBackOff" | "ImagePullBackOff"
            | "ErrImagePull" | "OOMKilled" => ("✖", Color::Red),
            _ => ("?", Color::Grey),
        }
    }

    /// A status word, with its symbol and colour on a terminal.
    pub fn status(&self, status: &str) -> String {
        if !self.symbols {
            return status.to_owned();
        }
        let (symbol, color) = Self::classify(status);
        self.paint(&format!("{symbol} {status}"), color)
    }

    /// The visible width of a decorated string (escape codes do not count).
    pub fn width(text: &str) -> usize {
        let mut width = 0;
        let mut in_escape = false;
        for c in text.chars() {
            if in_escape {
                if c == 'm' {
                    in_escape = false;
                }
            } else if c == '\x1b' {
                in_escape = true;
            } else {
                width += 1;
            }
        }
        width
    }

    pub fn tree(&self) -> TreeGlyphs {
        if self.symbols {
            TreeGlyphs {
                branch: "├──",
                last: "└──",
                pipe: "│  ",
                blank: "   ",
            }
        } else {
            TreeGlyphs {
                branch: "|--",
                last: "`--",
                pipe: "|  ",
                blank: "   ",
            }
        }
    }

    /// The icon in front of a tree node of the given kind (none in plain text).
    pub fn kind_icon(&self, kind: &str) -> &'static str {
        if !self.symbols {
            return "";
        }
        match kind {
            "Rollout" => "⟳ ",
            "Revision" => "# ",
            "ReplicaSet" => "⧉ ",
            "Pod" => "□ ",
            "AnalysisRun" => "α ",
            "Metric" => "◇ ",
            _ => "",
        }
    }

    /// The marker in front of the current canary step.
    pub fn current_step_marker(&self) -> String {
        if self.symbols {
            self.paint("▶", Color::Blue)
        } else {
            ">".to_owned()
        }
    }

    /// Counters of an AnalysisRun or metric: successful, failed, inconclusive, error.
    pub fn counters(&self, successful: i32, failed: i32, inconclusive: i32, error: i32) -> String {
        let mut parts = Vec::new();
        let labelled = |symbol: &str, word: &str, n: i32, color: Color| {
            if self.symbols {
                self.paint(&format!("{symbol} {n}"), color)
            } else {
                format!("{word}:{n}")
            }
        };
        if successful > 0 || (failed == 0 && inconclusive == 0 && error == 0) {
            parts.push(labelled("✔", "successful", successful, Color::Green));
        }
        if failed > 0 {
            parts.push(labelled("✖", "failed", failed, Color::Red));
        }
        if inconclusive > 0 {
            parts.push(labelled("⚠", "inconclusive", inconclusive, Color::Yellow));
        }
        if error > 0 {
            parts.push(labelled("⚠", "error", error, Color::Red));
        }
        parts.join(" ")
    }
}
