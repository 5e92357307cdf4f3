//! The one reader of the official programs' command lines, in the forms their Go flag
//! parsers (pflag with klog's flags) accept: `--name=value`, `--name value`, `-n value`,
//! `-n=value`, `--` ending the flags, and every flag of klog v2 ([`KLOG_FLAGS`]): its
//! verbosity `-v N`, `--v=N`, and the others, accepted in each of these forms (a boolean
//! one also bare or `=true`/`=false`, as Go's flag package takes it) and ignored, each
//! noted at `-v`: this binary logs to stderr only, as the kubelet reads a plugin's logs.

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
    /// The klog flags given that do not apply here, as given: noted at `-v`.
    pub ignored: Vec<String>,
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

/// How a klog flag is given.
#[derive(Clone, Copy)]
enum Klog {
    /// A boolean: bare, or `=true`/`=false` (never a separate value).
    Switch,
    /// A flag with a value, checked by the function as klog checks it.
    Value(fn(&str) -> Result<(), String>),
}

/// Every flag klog v2 registers (`klog.InitFlags`) and component-base's
/// `--log-flush-frequency`, which the official programs take, besides `-v`.
const KLOG_FLAGS: &[(&str, Klog)] = &[
    ("add_dir_header", Klog::Switch),
    ("alsologtostderr", Klog::Switch),
    ("legacy_stderr_threshold_behavior", Klog::Switch),
    ("log_backtrace_at", Klog::Value(trace_location)),
    ("log_dir", Klog::Value(any)),
    ("log_file", Klog::Value(any)),
    ("log_file_max_size", Klog::Value(unsigned)),
    ("log-flush-frequency", Klog::Value(go_duration)),
    ("logtostderr", Klog::Switch),
    ("one_output", Klog::Switch),
    ("skip_headers", Klog::Switch),
    ("skip_log_headers", Klog::Switch),
    ("stderrthreshold", Klog::Value(severity)),
    ("vmodule", Klog::Value(module_spec)),
];

/// Reads `args` (without the program name) against `flags`. `-h`/`--help`, `--version`
/// and klog's flags ([`KLOG_FLAGS`], `-v`/`--v`) are known to every mode.
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
            _ if klog(name).is_some() => {
                let given = match klog(name) {
                    Some(Klog::Switch) => {
                        if let Some(value) = &inline {
                            go_bool(value).map_err(|problem| {
                                format!("invalid value for {}: {problem}", icp_core::quote(&arg))
                            })?;
                        }
                        arg.clone()
                    }
                    Some(Klog::Value(check)) => {
                        let value = value()?;
                        check(&value).map_err(|problem| {
                            format!(
                                "invalid value {} for flag -{name}: {problem}",
                                icp_core::quote(&value)
                            )
                        })?;
                        match inline {
                            Some(_) => arg.clone(),
                            None => format!("{arg} {value}"),
                        }
                    }
                    None => unreachable!("matched above"),
                };
                parsed.ignored.push(given);
            }
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

/// klog's flags besides `-v`, as `--help` lists them: `--logtostderr`, ...
pub fn klog_flag_names() -> Vec<String> {
    KLOG_FLAGS
        .iter()
        .map(|(name, _)| format!("--{name}"))
        .collect()
}

/// The klog flag called `name`, if it is one.
fn klog(name: &str) -> Option<Klog> {
    KLOG_FLAGS
        .iter()
        .find(|(flag, _)| *flag == name)
        .map(|&(_, kind)| kind)
}

/// Any value: a path.
fn any(_: &str) -> Result<(), String> {
    Ok(())
}

/// A boolean as Go's `strconv.ParseBool` reads it.
fn go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err("not a boolean (true or false)".to_owned()),
    }
}

/// A 64-bit unsigned number, as `--log_file_max_size` takes it.
fn unsigned(value: &str) -> Result<(), String> {
    value
        .parse::<u64>()
        .map(drop)
        .map_err(|_| "not an unsigned number".to_owned())
}

/// A Go duration (`5s`, `1m30s`), as `--log-flush-frequency` takes it.
fn go_duration(value: &str) -> Result<(), String> {
    crate::duration::parse(value)
        .map(drop)
        .map_err(|_| "not a Go duration such as 5s".to_owned())
}

/// A severity, as `--stderrthreshold` takes it: a name or its number.
fn severity(value: &str) -> Result<(), String> {
    let names = ["INFO", "WARNING", "ERROR", "FATAL"];
    let known = names.iter().any(|name| name.eq_ignore_ascii_case(value))
        || value.parse::<usize>().is_ok_and(|n| n < names.len());
    match known {
        true => Ok(()),
        false => Err("not a severity (INFO, WARNING, ERROR or FATAL)".to_owned()),
    }
}

/// `--vmodule`'s comma-separated `pattern=N` settings.
fn module_spec(value: &str) -> Result<(), String> {
    for setting in value.split(',').filter(|s| !s.is_empty()) {
        match setting.split_once('=') {
            Some((pattern, level)) if !pattern.is_empty() && level.parse::<i32>().is_ok() => {}
            _ => return Err("expected comma-separated pattern=N".to_owned()),
        }
    }
    Ok(())
}

/// `--log_backtrace_at`'s `file.go:N`, or nothing.
fn trace_location(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    match value.rsplit_once(':') {
        Some((file, line)) if file.ends_with(".go") && line.parse::<u32>().is_ok() => Ok(()),
        _ => Err("expected file.go:N".to_owned()),
    }
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

    /// Every klog flag, in every form Go's flag package and pflag take, is accepted and
    /// kept to be noted; a boolean never takes the next argument as its value.
    #[test]
    fn takes_every_klog_flag_in_every_form_and_ignores_it() {
        for (args, ignored) in [
            (&["--logtostderr"][..], &["--logtostderr"][..]),
            (&["-logtostderr=false"], &["-logtostderr=false"]),
            (&["--alsologtostderr=true"], &["--alsologtostderr=true"]),
            (
                &["-add_dir_header", "-one_output"],
                &["-add_dir_header", "-one_output"],
            ),
            (
                &["--skip_headers=1", "--skip_log_headers=F"],
                &["--skip_headers=1", "--skip_log_headers=F"],
            ),
            (
                &["--legacy_stderr_threshold_behavior=false"],
                &["--legacy_stderr_threshold_behavior=false"],
            ),
            (&["--log_dir", "/var/log/x"], &["--log_dir /var/log/x"]),
            (&["-log_dir=/var/log/x"], &["-log_dir=/var/log/x"]),
            (&["-log_file", "/tmp/l.log"], &["-log_file /tmp/l.log"]),
            (&["--log_file_max_size=1800"], &["--log_file_max_size=1800"]),
            (
                &["--stderrthreshold", "WARNING"],
                &["--stderrthreshold WARNING"],
            ),
            (&["-stderrthreshold=2"], &["-stderrthreshold=2"]),
            (
                &["--vmodule=plugin=4,main*=2"],
                &["--vmodule=plugin=4,main*=2"],
            ),
            (&["--vmodule", ""], &["--vmodule "]),
            (
                &["--log_backtrace_at=main.go:30"],
                &["--log_backtrace_at=main.go:30"],
            ),
            (
                &["--log-flush-frequency", "5s"],
                &["--log-flush-frequency 5s"],
            ),
        ] {
            let parsed = served(args);
            assert_eq!(parsed.ignored, ignored, "{args:?}");
            assert!(parsed.positional.is_empty(), "{args:?}");
        }
        let parsed = served(&["--logtostderr", "azure.json", "--v=4", "-r", "a:b"]);
        assert_eq!(parsed.positional, ["azure.json"]);
        assert_eq!(
            (parsed.verbosity, parsed.all("registry-mirror")),
            (2, &["a:b".to_owned()][..])
        );
    }

    #[test]
    fn refuses_klog_values_klog_refuses() {
        for (args, expected) in [
            (
                &["--logtostderr=maybe"][..],
                "invalid value for \"--logtostderr=maybe\": not a boolean (true or false)",
            ),
            (
                &["--log_file_max_size=-1"],
                "invalid value \"-1\" for flag -log_file_max_size: not an unsigned number",
            ),
            (
                &["--stderrthreshold=LOUD"],
                "invalid value \"LOUD\" for flag -stderrthreshold: not a severity (INFO, WARNING, ERROR or FATAL)",
            ),
            (
                &["--vmodule=plugin"],
                "invalid value \"plugin\" for flag -vmodule: expected comma-separated pattern=N",
            ),
            (
                &["--log_backtrace_at=main:3"],
                "invalid value \"main:3\" for flag -log_backtrace_at: expected file.go:N",
            ),
            (
                &["--log-flush-frequency=soon"],
                "invalid value \"soon\" for flag -log-flush-frequency: not a Go duration such as 5s",
            ),
            (&["--log_dir"], "flag \"--log_dir\" needs a value"),
            (
                &["--logtostderrr"],
                "unknown argument \"--logtostderrr\": no such flag",
            ),
        ] {
            assert_eq!(parse_strs(args).unwrap_err(), expected, "{args:?}");
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
