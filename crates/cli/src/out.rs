//! Standard output that may be closed or full: `tether list-images | head -1` is a normal way to use a CLI,
//! and `> /dev/full` a normal way for a disk to be. A closed pipe ends the process cleanly (exit 0, as
//! other Unix tools do); any other write error is reported on stderr with exit status 1. Never a panic.

use std::io::Write;

/// Writes `text` to stdout and flushes it.
pub fn write(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("tether: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// `println!` for stdout that may be closed or full.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::write(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for stdout that may be closed or full.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(&format!($($arg)*))
    };
}

pub(crate) use {out, outln};
