//! The command lines the kubelet runs the plugin with, read without building clap's
//! parser, which costs a third of a plugin process's own instructions: plugin mode and
//! `get` with the flags they take, each given once in a form that leaves no doubt. Any
//! other command line, help, a mistake or anything unusual, is clap's to read, so
//! every message and refusal stays clap's; a test sets this reader against clap's on
//! every short command line made of the tokens that matter.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{Cli, Command, Serving};

/// The most `-v` this reader counts; more is clap's to read.
const MAX_VERBOSITY: u8 = 9;

/// `args` (the program's name first) read as clap would read them, or `None` when the
/// command line is not one this reader takes on.
pub(super) fn parse(args: &[OsString]) -> Option<Cli> {
    let mut config = None;
    // The answering options given before `get` (plugin mode's) and after it (`get`'s).
    let mut serving = [Serving::default(), Serving::default()];
    // `-v` counted before `get` and after it: clap takes the latter when there is one.
    let mut verbosity = [0u8; 2];
    let mut get: Option<(Option<String>, Option<String>)> = None;
    let mut args = args.iter().skip(1).map(|arg| arg.to_str());
    while let Some(arg) = args.next() {
        let arg = arg?;
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (arg, None),
        };
        let mut value = || match inline {
            Some(value) => plain(value),
            None => plain(args.next()??),
        };
        let scope = usize::from(get.is_some());
        let options = &mut serving[scope];
        match flag {
            "--config" => set(&mut config, PathBuf::from(value()?))?,
            "--cache-dir" => set(&mut options.cache_dir, PathBuf::from(value()?))?,
            "--audit-log" => set(&mut options.audit_log, PathBuf::from(value()?))?,
            "--metrics-dir" => set(&mut options.metrics_dir, PathBuf::from(value()?))?,
            "--audience" => set(&mut options.audience, value()?.to_owned())?,
            "--no-cache" if inline.is_none() && !options.no_cache => options.no_cache = true,
            "--verbose" if inline.is_none() => verbosity[scope] += 1,
            _ if inline.is_none() && is_short_verbose(flag) => {
                let count = &mut verbosity[scope];
                *count = count.checked_add(u8::try_from(flag.len() - 1).ok()?)?;
            }
            "get" if get.is_none() => get = Some((None, None)),
            "--api-version" => {
                let (_, api_version) = get.as_mut()?;
                let given = value()?;
                ["v1", "v1beta1", "v1alpha1"]
                    .contains(&given)
                    .then_some(())?;
                set(api_version, given.to_owned())?;
            }
            image if !image.starts_with('-') => {
                let (slot, _) = get.as_mut()?;
                set(slot, plain(image)?.to_owned())?;
            }
            _ => return None,
        }
        if verbosity.iter().any(|&count| count > MAX_VERBOSITY) {
            return None;
        }
    }
    let [top, own] = serving;
    let command = match get {
        Some((image, api_version)) => Some(Command::Get {
            image: image?,
            api_version: api_version.unwrap_or_else(|| "v1".to_owned()),
            serving: own,
        }),
        None => None,
    };
    Some(Cli {
        config,
        verbose: match verbosity {
            [before, 0] => before,
            [_, after] => after,
        },
        serving: top,
        command,
    })
}

/// A value this reader takes as it is: not empty, and not one clap might read as a flag.
fn plain(value: &str) -> Option<&str> {
    (!value.is_empty() && !value.starts_with('-')).then_some(value)
}

/// Sets a flag's value, given at most once.
fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

/// `-v`, `-vv`, ...: clap's count of short `-v` flags run together.
fn is_short_verbose(flag: &str) -> bool {
    flag.len() > 1 && flag.starts_with('-') && flag[1..].bytes().all(|b| b == b'v')
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The tokens command lines are made of here: every flag of plugin mode and `get`
    /// in each form, values clap reads differently, and what this reader leaves to clap.
    const TOKENS: &[&str] = &[
        "get",
        "img",
        "registry.example/app:1",
        "--config",
        "--config=r.yaml",
        "--config=",
        "r.yaml",
        "--cache-dir",
        "--cache-dir=/c",
        "--audit-log=/a",
        "--metrics-dir",
        "--audience",
        "--audience=aud",
        "--no-cache",
        "--no-cache=true",
        "-v",
        "-vv",
        "--verbose",
        "--verbose=1",
        "-vx",
        "--api-version",
        "--api-version=v1beta1",
        "v1alpha1",
        "v2",
        "-",
        "--",
        "",
        "--help",
        "cache",
        "list",
        "--unknown",
        "-c",
    ];

    /// The reader against clap on one command line: where it takes one on, clap reads
    /// the same.
    fn agrees(tokens: &[&str]) {
        let args: Vec<OsString> = std::iter::once("image-credential-provider")
            .chain(tokens.iter().copied())
            .map(OsString::from)
            .collect();
        if let Some(fast) = parse(&args) {
            match Cli::try_parse_from(&args) {
                Ok(clap) => assert_eq!(fast, clap, "{tokens:?}"),
                Err(error) => panic!("{tokens:?}: clap refuses ({error}), the reader takes it"),
            }
        }
    }

    #[test]
    fn reads_every_command_line_of_up_to_three_tokens_as_clap_does() {
        agrees(&[]);
        for a in TOKENS {
            agrees(&[a]);
            for b in TOKENS {
                agrees(&[a, b]);
                for c in TOKENS {
                    agrees(&[a, b, c]);
                }
            }
        }
    }

    #[test]
    fn reads_longer_command_lines_as_clap_does() {
        // A fixed xorshift sequence: the same command lines on every run.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let length = 4 + (next() % 6) as usize;
            let tokens: Vec<&str> = (0..length)
                .map(|_| TOKENS[(next() % TOKENS.len() as u64) as usize])
                .collect();
            agrees(&tokens);
        }
    }

    #[test]
    fn takes_on_the_kubelets_command_lines() {
        let taken = |line: &[&str]| {
            let args: Vec<OsString> = std::iter::once("p")
                .chain(line.iter().copied())
                .map(OsString::from)
                .collect();
            parse(&args).is_some()
        };
        assert!(taken(&[]));
        assert!(taken(&["--config", "/etc/kubernetes/rules.yaml", "-v"]));
        assert!(taken(&[
            "--audience=sts.amazonaws.com",
            "--cache-dir=/var/cache/x"
        ]));
        assert!(taken(&[
            "get",
            "nginx",
            "--no-cache",
            "--api-version",
            "v1beta1"
        ]));
        assert!(!taken(&["--help"]));
        assert!(!taken(&["check-config"]));
        assert!(!taken(&["--config", "a", "--config", "b"]));
    }
}
