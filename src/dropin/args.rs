//! The one reader of the official programs' command lines, in the forms their Go flag
//! parsers (pflag with klog's flags) accept: `--name=value`, `--name value`, `-n value`,
//! `-n=value`, `--` ending the flags, and klog's verbosity `-v N`, `--v=N`.

use std::collections::BTreeMap;
use std::ffi::OsString;

/// A flag of a drop-in mode that takes a value.
pub struct Flag {
    /// The long name, without dashes: `registry-mirror`.
    pub name: &'static str,
    /// The one-letter shorthand, if any: `r`.
    pub short: Option<&'static str>,
}

/// What a command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer the request on stdin.
    Serve(Parsed),
    /// Print the version.
    Version,
    /// Print the usage.
    Help,
}

/// The flags and arguments of a command line that asks to serve.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Logging verbosity as `-v` counts it, from klog's level.
    pub verbosity: u8,
    /// Each flag's values by long name, in the order given.
    pub values: BTreeMap<&'static str, Vec<String>>,
    /// The arguments that are not flags, in order.
    pub positional: Vec<String>,
}

#[cfg_attr(
    not(any(feature = "acr", feature = "gcp")),
    allow(dead_code, reason = "the acr and gcp drop-in modes read flag values")
)]
impl Parsed {
    /// Every value given for the flag `name`, in order; a flag that takes one value keeps
    /// the last, as pflag does.
    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }
}

/// Reads `args` (without the program name) against `flags`. `-h`/`--help`, `--version`
/// and `-v`/`--v` are known to every mode.
pub fn parse(args: &[OsString], flags: &[Flag]) -> Result<Action, String> {
    let mut parsed = Parsed::default();
    let mut args = args.iter().map(|arg| {
        arg.to_str()
            .map(str::to_owned)
            .ok_or_else(|| "arguments must be UTF-8".to_owned())
    });
    let mut flags_ended = false;
    while let Some(arg) = args.next() {
        let arg = arg?;
        let name = match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            Some("") if arg == "--" && !flags_ended => {
                flags_ended = true;
                continue;
            }
            Some(name) if !name.is_empty() && !flags_ended => name,
            _ => {
                parsed.positional.push(arg);
                continue;
            }
        };
        let (name, inline) = match name.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (name, None),
        };
        let mut value = || match inline.clone() {
            Some(value) => Ok(value),
            None => args
                .next()
                .unwrap_or_else(|| Err(format!("flag {} needs a value", icp_core::quote(&arg)))),
        };
        match name {
            "h" | "help" => return Ok(Action::Help),
            "version" => return Ok(Action::Version),
            "v" => parsed.verbosity = klog_verbosity(&value()?)?,
            _ => {
                let flag = flags
                    .iter()
                    .find(|flag| flag.name == name || flag.short == Some(name))
                    .ok_or_else(|| {
                        format!("unknown argument {}: no such flag", icp_core::quote(&arg))
                    })?;
                let value = value()?;
                parsed.values.entry(flag.name).or_default().push(value);
            }
        }
    }
    Ok(Action::Serve(parsed))
}

/// klog's `-v` level (any 32-bit integer, as klog reads it) as `-v` counts verbosity:
/// levels up to 1 log warnings, 2 and 3 what was served, 4 and 5 details, 6 and more
/// everything.
fn klog_verbosity(level: &str) -> Result<u8, String> {
    let level: i32 = level
        .parse()
        .map_err(|_| format!("verbosity {} is not a number", icp_core::quote(level)))?;
    Ok(match level {
        ..=1 => 0,
        2..=3 => 1,
        4..=5 => 2,
        _ => 3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag {
            name: "registry-mirror",
            short: Some("r"),
        },
        Flag {
            name: "authFlow",
            short: Some("a"),
        },
    ];

    fn parse_strs(args: &[&str]) -> Result<Action, String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse(&args, FLAGS)
    }

    fn served(args: &[&str]) -> Parsed {
        match parse_strs(args) {
            Ok(Action::Serve(parsed)) => parsed,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn reads_every_form_pflag_accepts() {
        let parsed = served(&[
            "azure.json",
            "--registry-mirror=a:b",
            "--registry-mirror",
            "c:d",
            "-r",
            "e:f",
            "-r=g:h",
            "-a",
            "gcr",
            "--authFlow=dockercfg",
        ]);
        assert_eq!(parsed.positional, ["azure.json"]);
        assert_eq!(parsed.all("registry-mirror"), ["a:b", "c:d", "e:f", "g:h"]);
        assert_eq!(parsed.all("authFlow"), ["gcr", "dockercfg"]);
        assert!(parsed.all("missing").is_empty());
        assert_eq!(served(&["--", "-x"]).positional, ["-x"]);
    }

    #[test]
    fn maps_klog_levels_one_way() {
        for (args, verbosity) in [
            (&[][..], 0),
            (&["--v=0"], 0),
            (&["--v=1"], 0),
            (&["-v", "2"], 1),
            (&["--v", "3"], 1),
            (&["-v=4"], 2),
            (&["--v=5"], 2),
            (&["--v=6"], 3),
            (&["--v=300"], 3),
            (&["--v=-1"], 0),
        ] {
            assert_eq!(served(args).verbosity, verbosity, "{args:?}");
        }
    }

    #[test]
    fn help_and_version_win() {
        assert_eq!(parse_strs(&["--version"]), Ok(Action::Version));
        assert_eq!(parse_strs(&["x", "-h"]), Ok(Action::Help));
        assert_eq!(parse_strs(&["--help", "--bogus"]), Ok(Action::Help));
    }

    #[test]
    fn refuses_what_pflag_refuses() {
        for (args, expected) in [
            (
                &["--registry-mirror"][..],
                "flag \"--registry-mirror\" needs a value",
            ),
            (&["-v"], "flag \"-v\" needs a value"),
            (&["--v=high"], "verbosity \"high\" is not a number"),
            (
                &["--v=99999999999"],
                "verbosity \"99999999999\" is not a number",
            ),
            (
                &["--config", "x"],
                "unknown argument \"--config\": no such flag",
            ),
            (
                &["--cloud-config=/x"],
                "unknown argument \"--cloud-config=/x\": no such flag",
            ),
        ] {
            assert_eq!(parse_strs(args).unwrap_err(), expected, "{args:?}");
        }
    }
}
