//! Go's `flag` package syntax (a leaf: it imports nothing of the crate), so DaemonSet arguments written for the Go provider work
//! unchanged: `-name=value`, `--name=value`, `-name value`, bare `-name` for booleans,
//! `--` ends the flags, and parsing stops at the first argument that is not a flag.

use std::collections::BTreeMap;

/// What a flag takes, and the type word its usage line shows (Go's `flag.PrintDefaults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A switch: bare `-name`, or `-name=false`.
    Bool,
    /// A text value; a repeated flag keeps the last.
    String,
    /// A whole number; a repeated flag keeps the last.
    Int,
    /// A Go duration (`25s`, `2m`); a repeated flag keeps the last.
    Duration,
    /// A text value that may be repeated: the occurrences are joined with commas, as if
    /// written comma-separated in one.
    List,
}

impl Kind {
    /// The word after the flag's name in the usage text.
    fn type_word(self) -> &'static str {
        match self {
            Kind::Bool => "",
            Kind::String | Kind::List => " string",
            Kind::Int => " int",
            Kind::Duration => " duration",
        }
    }

    /// Whether `default` is the type's zero value, which Go's usage does not print.
    fn is_zero(self, default: &str) -> bool {
        match self {
            Kind::Bool => default.is_empty() || default == "false",
            Kind::String | Kind::List => default.is_empty(),
            Kind::Int => default.is_empty() || default == "0",
            Kind::Duration => default.is_empty() || default == "0s",
        }
    }
}

/// One accepted flag.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    pub kind: Kind,
    /// Default shown in the usage text.
    pub default: &'static str,
    pub help: &'static str,
}

impl Flag {
    /// A flag for a table of flags.
    pub const fn new(
        name: &'static str,
        kind: Kind,
        default: &'static str,
        help: &'static str,
    ) -> Flag {
        Flag {
            name,
            kind,
            default,
            help,
        }
    }
}

/// Why the arguments could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    /// `-h` or `-help`: the usage is printed, and the exit code is 0.
    #[error("help requested")]
    Help,
    /// A flag the program does not have.
    #[error("flag provided but not defined: -{0}")]
    Unknown(String),
    /// A value flag last on the line, with nothing after it.
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    /// A boolean flag given a value `strconv.ParseBool` refuses.
    #[error("invalid boolean value {value:?} for -{name}: use true or false")]
    BadBool { name: String, value: String },
    /// An argument that starts like a flag but is not one (`---x`, `-=x`).
    #[error("bad flag syntax: {0}")]
    Syntax(String),
}

/// Flags as given: the last occurrence of each wins, except [`Kind::List`] flags, whose
/// occurrences are joined with commas; booleans are stored as "true"/"false".
#[derive(Debug, Default, Clone)]
pub struct Parsed {
    pub values: BTreeMap<&'static str, String>,
    pub rest: Vec<String>,
}

impl Parsed {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn bool(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses `args` (without the program name) against `flags`.
pub fn parse(flags: &[Flag], args: &[String]) -> Result<Parsed, FlagError> {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            parsed.rest.extend(args[i + 1..].iter().cloned());
            return Ok(parsed);
        }
        if arg.len() < 2 || !arg.starts_with('-') {
            parsed.rest.extend(args[i..].iter().cloned());
            return Ok(parsed);
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(FlagError::Syntax(arg.clone()));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(flag) = flags.iter().find(|f| f.name == name) else {
            if name == "h" || name == "help" {
                return Err(FlagError::Help);
            }
            return Err(FlagError::Unknown(name.to_string()));
        };
        let value = match (flag.kind, inline) {
            (Kind::Bool, None) => "true".to_string(),
            (Kind::Bool, Some(v)) => match parse_go_bool(&v) {
                Some(b) => b.to_string(),
                None => {
                    return Err(FlagError::BadBool {
                        name: name.into(),
                        value: v,
                    });
                }
            },
            (_, Some(v)) => v,
            (_, None) => {
                i += 1;
                match args.get(i) {
                    Some(v) => v.clone(),
                    None => return Err(FlagError::MissingValue(name.into())),
                }
            }
        };
        match parsed.values.get_mut(flag.name) {
            Some(earlier) if flag.kind == Kind::List => {
                earlier.push(',');
                earlier.push_str(&value);
            }
            _ => {
                parsed.values.insert(flag.name, value);
            }
        }
        i += 1;
    }
    Ok(parsed)
}

/// Like [`parse`], but flags may also come after positional arguments (`check a.yaml
/// -output json`); only `--` ends the flags. `-` alone is a positional argument.
pub fn parse_anywhere(flags: &[Flag], args: &[String]) -> Result<Parsed, FlagError> {
    let mut all = Parsed::default();
    let mut rest = args;
    loop {
        let part = parse(flags, rest)?;
        for (name, value) in part.values {
            all.values.insert(name, value);
        }
        let consumed = rest.len() - part.rest.len();
        let ended = rest[..consumed].iter().any(|a| a == "--");
        match part.rest.split_first() {
            Some((first, tail)) if !ended => {
                all.rest.push(first.clone());
                rest = &rest[consumed + 1..];
                debug_assert_eq!(rest, tail);
            }
            _ => {
                all.rest.extend(part.rest);
                return Ok(all);
            }
        }
    }
}

/// The flags' lines in the layout of Go's `flag.PrintDefaults`: the name, its type word
/// (`string`, `int`, `duration`, none for a switch), the help, and a default that is not
/// the type's zero value (quoted for text, as Go does).
pub fn defaults(flags: &[Flag]) -> String {
    let mut out = String::new();
    for f in flags {
        out.push_str(&format!(
            "  -{}{}\n    \t{}",
            f.name,
            f.kind.type_word(),
            f.help
        ));
        if !f.kind.is_zero(f.default) {
            match f.kind {
                Kind::String | Kind::List => out.push_str(&format!(" (default {:?})", f.default)),
                _ => out.push_str(&format!(" (default {})", f.default)),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag {
            name: "endpoint",
            kind: Kind::List,
            default: "/tmp/vault.sock",
            help: "socket",
        },
        Flag {
            name: "debug",
            kind: Kind::Bool,
            default: "false",
            help: "debug",
        },
    ];

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn go_syntax_forms() {
        for form in [
            &["-endpoint=/a"][..],
            &["--endpoint=/a"],
            &["-endpoint", "/a"],
            &["--endpoint", "/a"],
        ] {
            let p = parse(FLAGS, &args(form)).unwrap();
            assert_eq!(p.get("endpoint"), Some("/a"), "{form:?}");
        }
        let p = parse(FLAGS, &args(&["-debug", "-endpoint=/b"])).unwrap();
        assert!(p.bool("debug"));
        let p = parse(FLAGS, &args(&["--debug=false"])).unwrap();
        assert!(!p.bool("debug"));
        assert!(p.is_set("debug"));
    }

    #[test]
    fn stops_at_first_positional_and_double_dash() {
        let p = parse(FLAGS, &args(&["-debug", "mount", "-x"])).unwrap();
        assert_eq!(p.rest, args(&["mount", "-x"]));
        let p = parse(FLAGS, &args(&["--", "-debug"])).unwrap();
        assert_eq!(p.rest, args(&["-debug"]));
        assert!(!p.is_set("debug"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(FLAGS, &args(&["-nope"])).unwrap_err(),
            FlagError::Unknown("nope".into())
        );
        assert_eq!(
            parse(FLAGS, &args(&["-endpoint"])).unwrap_err(),
            FlagError::MissingValue("endpoint".into())
        );
        assert!(matches!(
            parse(FLAGS, &args(&["-debug=maybe"])).unwrap_err(),
            FlagError::BadBool { .. }
        ));
        assert_eq!(parse(FLAGS, &args(&["-h"])).unwrap_err(), FlagError::Help);
        assert_eq!(
            parse(FLAGS, &args(&["---x"])).unwrap_err(),
            FlagError::Syntax("---x".into())
        );
    }

    #[test]
    fn last_occurrence_wins_but_a_list_gathers_them_all() {
        let p = parse(FLAGS, &args(&["-debug=false", "-debug"])).unwrap();
        assert!(p.bool("debug"));
        let p = parse(FLAGS, &args(&["-endpoint=/a", "-endpoint", "/b,/c"])).unwrap();
        assert_eq!(p.get("endpoint"), Some("/a,/b,/c"));
        let flags = [Flag::new("timeout", Kind::Duration, "2m", "deadline")];
        let p = parse(&flags, &args(&["-timeout=1s", "-timeout=3s"])).unwrap();
        assert_eq!(p.get("timeout"), Some("3s"));
    }

    #[test]
    fn flags_anywhere_until_a_double_dash() {
        let p = parse_anywhere(FLAGS, &args(&["a", "-debug", "-", "-endpoint=/x", "b"])).unwrap();
        assert_eq!(p.rest, args(&["a", "-", "b"]));
        assert!(p.bool("debug"));
        assert_eq!(p.get("endpoint"), Some("/x"));
        let p = parse_anywhere(FLAGS, &args(&["a", "--", "-debug"])).unwrap();
        assert_eq!(p.rest, args(&["a", "-debug"]));
        assert!(!p.is_set("debug"));
    }

    #[test]
    fn usage_shows_go_type_words_and_defaults() {
        let flags = [
            Flag::new("a", Kind::String, "x", "text"),
            Flag::new("b", Kind::Int, "8", "count"),
            Flag::new("c", Kind::Duration, "25s", "wait"),
            Flag::new("d", Kind::Bool, "true", "on"),
            Flag::new("e", Kind::Bool, "false", "off"),
            Flag::new("f", Kind::Duration, "0s", "none"),
        ];
        assert_eq!(
            defaults(&flags),
            "  -a string\n    \ttext (default \"x\")\n  -b int\n    \tcount (default 8)\n  \
             -c duration\n    \twait (default 25s)\n  -d\n    \ton (default true)\n  -e\n    \t\
             off\n  -f duration\n    \tnone\n"
        );
    }
}
