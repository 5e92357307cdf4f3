//! `image-credential-provider`'s command line: plugin mode (no subcommand), `get`,
//! `check-config`, `kubelet-config`, `explain`, `cache`, `install` and `uninstall`, or a
//! drop-in mode when the binary is run under an official provider's name. The commands are
//! the library's (`src/commands/`); this is the one place the process ends.
//!
//! The process starts here, from the C runtime, without Rust's own start (`lang_start`):
//! that reads `/proc/self/maps` and maps a signal stack to report a stack overflow by name,
//! a sixth of what a plugin process spends before it reads its request. What of it the
//! plugin needs is done in [`main`]: the standard descriptors made safe, `SIGPIPE` ignored,
//! stdout flushed at the end. A stack overflow still ends the process (a plain `SIGSEGV`).

#![no_main]

use std::io::Write;

use image_credential_provider::commands;

/// The C `main`: the arguments are read through `std::env`, as usual.
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    standard_descriptors();
    // SAFETY: setting a signal's disposition to ignore has no other effect.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let outcome = commands::run(std::env::args_os().collect());
    // Rust's start flushes stdout at exit; without it, what is still buffered is written here.
    let outcome = match std::io::stdout().flush() {
        Ok(()) => outcome,
        Err(_) => commands::Outcome::Failure,
    };
    libc::c_int::from(outcome.code())
}

/// Opens `/dev/null` on any of descriptors 0, 1 and 2 that is closed, as Rust's start does:
/// otherwise the next file this process opens would take its number, and a response meant
/// for stdout would be written into it.
fn standard_descriptors() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd; a zero timeout does not block.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for pollfd in fds {
        if pollfd.revents & libc::POLLNVAL != 0 {
            // SAFETY: a constant path; the descriptor taken is the lowest free one, the
            // closed standard one, and stays open for the process's life.
            let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if opened != pollfd.fd {
                // Nothing safe to write to: Rust's start aborts here too.
                std::process::abort();
            }
        }
    }
}
