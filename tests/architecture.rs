//! The module graph points one way. Every file under `src/` is read, its top-level module found,
//! and every top-level module it names (`crate::x` in a `use` or a path, a `super::` chain that
//! climbs to the crate root, `tessera::x` in the binary) checked against [`LAYERS`]: a module
//! may name only modules of the rows below its own. [`FRONT_DOORS`] narrows that further for
//! the two ways in, which go through one module rather than around it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules from the top down. A module may name modules of later rows only: never one
/// of its own row, never one above. `main` is the binary (`src/main.rs`).
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["cli"],
    &["startup"],
    &["http", "admin"],
    &["oauth", "maintenance"],
    &["keys"],
    &["telemetry"],
    &["config"],
    &["store"],
    &["crypto"],
    &["clock", "secret"],
];

/// Front doors and the only modules each may name. The CLI acts through `admin` (and starts
/// the server through `startup`); HTTP hands every request to `oauth`.
const FRONT_DOORS: &[(&str, &[&str])] = &[
    ("main", &["cli"]),
    ("cli", &["admin", "startup", "telemetry", "config", "clock"]),
    ("http", &["oauth", "crypto", "secret"]),
];

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    assert!(!files.is_empty(), "no Rust files under {}", src.display());
    let mut found = BTreeSet::new();
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let Some(module) = ModulePath::of(relative) else {
            continue; // lib.rs: the crate root declares the modules and names nothing else.
        };
        found.insert(module.top.clone());
        let text = std::fs::read_to_string(file).expect("readable source");
        for reference in references(&text, &module) {
            if let Err(why) = allowed(&module.top, &reference.module) {
                violations.push(format!(
                    "src/{}:{}: {} names `{}`: {why}",
                    relative.display(),
                    reference.line,
                    module.top,
                    reference.module
                ));
            }
        }
    }
    let listed: BTreeSet<String> = LAYERS
        .iter()
        .flat_map(|row| row.iter().map(|m| (*m).to_owned()))
        .collect();
    for module in found.difference(&listed) {
        violations.push(format!(
            "src/{module}: a top-level module missing from LAYERS; give it a row"
        ));
    }
    for module in listed.difference(&found) {
        violations.push(format!("LAYERS lists `{module}`, which src/ does not have"));
    }
    assert!(
        violations.is_empty(),
        "imports against the layer table in tests/architecture.rs:\n  {}",
        violations.join("\n  ")
    );
}

/// The row of a top-level module, 0 at the top.
fn row_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&module))
}

/// Whether `from` may name `to`, and why not.
fn allowed(from: &str, to: &str) -> Result<(), String> {
    if from == to {
        return Ok(());
    }
    let (Some(from_row), Some(to_row)) = (row_of(from), row_of(to)) else {
        return Err(format!("`{to}` is not in LAYERS"));
    };
    if to_row == from_row {
        return Err(format!("`{to}` is in the same row as `{from}`"));
    }
    if to_row < from_row {
        return Err(format!("`{to}` is above `{from}` (an upward import)"));
    }
    if let Some((_, only)) = FRONT_DOORS.iter().find(|(door, _)| *door == from)
        && !only.contains(&to)
    {
        return Err(format!("`{from}` may name only {}", only.join(", ")));
    }
    Ok(())
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Where a file sits: its top-level module and its module path below the crate root.
#[derive(Debug, Clone)]
struct ModulePath {
    top: String,
    /// `["http", "openapi"]` for `src/http/openapi/mod.rs` or `src/http/openapi.rs`.
    path: Vec<String>,
    /// `src/main.rs`: a crate of its own, which names the library as `tessera`.
    binary: bool,
}

impl ModulePath {
    fn of(relative: &Path) -> Option<Self> {
        let mut path: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        if path.last().is_some_and(|last| last == "mod") {
            path.pop();
        }
        match path.as_slice() {
            [only] if only == "lib" => None,
            [only] if only == "main" => Some(Self {
                top: "main".into(),
                path: Vec::new(),
                binary: true,
            }),
            [top, ..] => Some(Self {
                top: top.clone(),
                path,
                binary: false,
            }),
            [] => None,
        }
    }
}

/// A top-level module named in a file, and the line it is named on.
#[derive(Debug, PartialEq, Eq)]
struct Reference {
    module: String,
    line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Other(char),
}

/// The top-level modules `text` names, outside comments and literals.
fn references(text: &str, module: &ModulePath) -> Vec<Reference> {
    let tokens = tokenize(text);
    let mut found = Vec::new();
    // Inline modules (`mod tests { .. }`) open a level that `super` climbs out of first.
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let (token, line) = &tokens[i];
        match token {
            Token::Open => depth += 1,
            Token::Close => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some((Token::Ident(_), _)), Some((Token::Open, _))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    inline.push(depth + 1);
                }
            }
            Token::Ident(word) if is_path_start(word, &tokens, i) => {
                let root = match word.as_str() {
                    "crate" => Some(i + 2),
                    "tessera" if module.binary => Some(i + 2),
                    "super" => {
                        let mut supers = 0;
                        let mut j = i;
                        while let (Some((Token::Ident(w), _)), Some((Token::PathSep, _))) =
                            (tokens.get(j), tokens.get(j + 1))
                        {
                            if w != "super" {
                                break;
                            }
                            supers += 1;
                            j += 2;
                        }
                        let here = module.path.len() + inline.len();
                        let climbed_to_root = supers >= here;
                        let first = i;
                        i = j.saturating_sub(1).max(first);
                        climbed_to_root.then_some(j)
                    }
                    _ => None,
                };
                if let Some(at) = root {
                    for name in first_segments(&tokens, at) {
                        found.push(Reference {
                            module: name,
                            line: *line,
                        });
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// `crate`, `super` or `tessera` starting a path: followed by `::`, not preceded by one.
fn is_path_start(word: &str, tokens: &[(Token, usize)], i: usize) -> bool {
    matches!(word, "crate" | "super" | "tessera")
        && matches!(tokens.get(i + 1), Some((Token::PathSep, _)))
        && !(i > 0 && matches!(tokens[i - 1].0, Token::PathSep))
}

/// The first segment of the path at `at`: one name, or each name of a `{ .. }` group.
fn first_segments(tokens: &[(Token, usize)], at: usize) -> Vec<String> {
    match tokens.get(at) {
        Some((Token::Ident(name), _)) if name != "self" => vec![name.clone()],
        Some((Token::Open, _)) => {
            let mut names = Vec::new();
            let mut depth = 0;
            let mut expect_name = true;
            for (token, _) in &tokens[at + 1..] {
                match token {
                    Token::Open => depth += 1,
                    Token::Close if depth == 0 => break,
                    Token::Close => depth -= 1,
                    Token::Comma if depth == 0 => expect_name = true,
                    Token::Ident(name) if depth == 0 && expect_name => {
                        if name != "self" {
                            names.push(name.clone());
                        }
                        expect_name = false;
                    }
                    _ => {}
                }
            }
            names
        }
        _ => Vec::new(),
    }
}

/// Identifiers, `::`, braces and commas with their line numbers; comments, string, byte-string
/// and character literals are skipped, and a lifetime is not taken for a character.
fn tokenize(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut nesting = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    nesting += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    nesting -= 1;
                    i += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(&chars, i) {
            // r"..", r#".."#, br#".."#: up to the quote followed by as many hashes.
            let mut j = i + usize::from(c == 'b') + 1 + hashes + 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                    j += 1 + hashes;
                    break;
                }
                line += usize::from(chars[j] == '\n');
                j += 1;
            }
            i = j;
        } else if c == '"' || (c == 'b' && at(i + 1) == '"') {
            let mut j = i + if c == 'b' { 2 } else { 1 };
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    j += 1;
                }
                line += usize::from(at(j) == '\n');
                j += 1;
            }
            i = j + 1;
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let start = i + if c == 'b' { 1 } else { 0 };
            if at(start + 1) == '\\' {
                let mut j = start + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if at(start + 2) == '\'' {
                i = start + 3;
            } else {
                i = start + 1; // a lifetime or a label
            }
        } else if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect();
            // `r#type`: the raw identifier's name.
            if word == "r" && at(j) == '#' && (at(j + 1).is_alphabetic() || at(j + 1) == '_') {
                i = j + 1;
                continue;
            }
            tokens.push((Token::Ident(word), line));
            i = j;
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push((Token::PathSep, line));
            i += 2;
        } else {
            tokens.push((
                match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    ',' => Token::Comma,
                    other => Token::Other(other),
                },
                line,
            ));
            i += 1;
        }
    }
    tokens
}

/// The number of `#` of a raw string starting at `i` (`r"`, `r#"`, `br##"`), if one does.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    let preceded_by_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    if preceded_by_ident {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some(hashes)
}

// ---- the checker itself, on made-up sources -------------------------------------------------

fn named(source: &str, file: &str) -> Vec<String> {
    let module = ModulePath::of(Path::new(file)).expect("a module");
    references(source, &module)
        .into_iter()
        .map(|r| r.module)
        .collect()
}

#[test]
fn finds_every_way_of_naming_a_module() {
    let source = r####"
        //! Not this: crate::cli in a comment.
        use crate::{clock::Clock, config::{self, Settings}, self as me};
        use crate::store::Store;
        use super::super::keys::KeyRing;
        use super::sibling;
        /* nor crate::admin /* nested */ here */
        const S: &str = "crate::http in a string";
        const R: &str = r#"crate::startup in a raw "string""#;
        const C: char = '"';
        fn f<'a>(x: &'a str) -> crate::oauth::Params { crate::crypto::tokens::random_id(); todo!() }
        #[schema(schema_with = crate::secret::Secret::new)]
        struct S;
        mod tests {
            use super::*;
            use super::super::super::telemetry;
        }
    "####;
    assert_eq!(
        named(source, "http/openapi/mod.rs"),
        [
            "clock",
            "config",
            "store",
            "keys",
            "oauth",
            "crypto",
            "secret",
            "telemetry"
        ]
    );
    assert_eq!(
        named("fn main() { tessera::cli::run(); }", "main.rs"),
        ["cli"]
    );
    assert!(named("use tessera::cli;", "admin/mod.rs").is_empty());
}

#[test]
fn an_upward_import_is_refused() {
    let store_naming_oauth = named("use crate::oauth::OAuthError;", "store/users.rs");
    assert_eq!(store_naming_oauth, ["oauth"]);
    assert!(allowed("store", "oauth").is_err());
    assert!(allowed("crypto", "config").is_err());
    assert!(allowed("oauth", "http").is_err());
    assert!(allowed("http", "admin").is_err(), "same row");
    assert!(allowed("cli", "store").is_err(), "around admin");
    assert!(allowed("http", "store").is_err(), "around oauth");
    assert!(allowed("cli", "admin").is_ok());
    assert!(allowed("oauth", "store").is_ok());
    assert!(allowed("store", "crypto").is_ok());
}
