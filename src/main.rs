//! `image-credential-provider`'s command line: plugin mode (no subcommand), `get`,
//! `check-config`, `kubelet-config` and `cache`, or a drop-in mode when the binary is run
//! under an official provider's name. The commands are the library's
//! (`src/commands/`); this is the one place the process ends.

use std::process::ExitCode;

fn main() -> ExitCode {
    image_credential_provider::commands::run(std::env::args_os().collect()).into()
}
