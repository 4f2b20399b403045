//! `plugin new`: a plugin project against this host's WIT, in Rust,
//! JavaScript or Python, that builds and passes `plugin test` as generated.
//! The templates (`templates/`, whose README says what goes where) are
//! compiled into the binary, with the WIT the host was built from, so a
//! project made by a binary matches that binary's contract.

use std::path::{Path, PathBuf};

use super::ToolkitError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Js,
    Python,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Prompt,
    Parser,
    Validator,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Prompt => "prompt",
            Kind::Parser => "parser",
            Kind::Validator => "validator",
        }
    }

    fn world(self) -> &'static str {
        match self {
            Kind::Prompt => "prompt-plugin",
            Kind::Parser => "parser-plugin",
            Kind::Validator => "validator-plugin",
        }
    }
}

const KINDS: [&str; 3] = ["prompt", "parser", "validator"];

const WIT: &str = include_str!("../../../wit/plugin.wit");

const TEMPLATES: &[(&str, &str)] = &[
    (
        "fixtures/incidents/oom-crashloop.yaml",
        include_str!("templates/fixtures/incidents/oom-crashloop.yaml"),
    ),
    (
        "fixtures/parser/json-reply.yaml",
        include_str!("templates/fixtures/parser/json-reply.yaml"),
    ),
    (
        "fixtures/parser/no-summary.yaml",
        include_str!("templates/fixtures/parser/no-summary.yaml"),
    ),
    (
        "fixtures/prompt/oom-crashloop.yaml",
        include_str!("templates/fixtures/prompt/oom-crashloop.yaml"),
    ),
    (
        "fixtures/validator/restart.yaml",
        include_str!("templates/fixtures/validator/restart.yaml"),
    ),
    (
        "fixtures/validator/scale-to-zero.yaml",
        include_str!("templates/fixtures/validator/scale-to-zero.yaml"),
    ),
    ("js/gitignore", include_str!("templates/js/gitignore")),
    ("js/package.json", include_str!("templates/js/package.json")),
    (
        "js/plugin.parser.js",
        include_str!("templates/js/plugin.parser.js"),
    ),
    (
        "js/plugin.prompt.js",
        include_str!("templates/js/plugin.prompt.js"),
    ),
    (
        "js/plugin.validator.js",
        include_str!("templates/js/plugin.validator.js"),
    ),
    (
        "project-README.md",
        include_str!("templates/project-README.md"),
    ),
    (
        "python/app.parser.py",
        include_str!("templates/python/app.parser.py"),
    ),
    (
        "python/app.prompt.py",
        include_str!("templates/python/app.prompt.py"),
    ),
    (
        "python/app.validator.py",
        include_str!("templates/python/app.validator.py"),
    ),
    (
        "python/gitignore",
        include_str!("templates/python/gitignore"),
    ),
    (
        "python/pyproject.toml",
        include_str!("templates/python/pyproject.toml"),
    ),
    ("rust/Cargo.toml", include_str!("templates/rust/Cargo.toml")),
    ("rust/gitignore", include_str!("templates/rust/gitignore")),
    (
        "rust/src/lib.parser.rs",
        include_str!("templates/rust/src/lib.parser.rs"),
    ),
    (
        "rust/src/lib.prompt.rs",
        include_str!("templates/rust/src/lib.prompt.rs"),
    ),
    (
        "rust/src/lib.validator.rs",
        include_str!("templates/rust/src/lib.validator.rs"),
    ),
];

/// Where template `path` goes in a project of `lang` and `kind`; `None`
/// when it is not part of one.
fn destination(path: &str, lang: Lang, kind: Kind) -> Option<PathBuf> {
    if path == "project-README.md" {
        return Some(PathBuf::from("README.md"));
    }
    if let Some(rest) = path.strip_prefix("fixtures/") {
        if rest.starts_with("incidents/") {
            return Some(PathBuf::from(path));
        }
        let (case_kind, case) = rest.split_once('/')?;
        return (case_kind == kind.as_str()).then(|| Path::new("fixtures").join(case));
    }
    let rest = path.strip_prefix(lang.as_str())?.strip_prefix('/')?;
    let (folder, file) = rest.rsplit_once('/').unwrap_or(("", rest));
    let file = match file {
        "gitignore" => ".gitignore".to_string(),
        file => {
            let mut parts: Vec<&str> = file.split('.').collect();
            if parts.len() == 3 && KINDS.contains(&parts[1]) {
                if parts[1] != kind.as_str() {
                    return None;
                }
                parts.remove(1);
            }
            parts.join(".")
        }
    };
    Some(Path::new(folder).join(file))
}

fn render(text: &str, name: &str, lang: Lang, kind: Kind) -> String {
    text.replace("{{name}}", name)
        .replace("{{kind}}", kind.as_str())
        .replace("{{lang}}", lang.as_str())
        .replace("{{world}}", kind.world())
        .replace("{{wit_version}}", crate::host::WIT_VERSION)
        .replace("{{wit_dir}}", "wit")
}

/// Writes the project into `dir`, which must not exist or be empty;
/// returns how many files were written.
pub fn write(dir: &Path, name: &str, lang: Lang, kind: Kind) -> Result<usize, ToolkitError> {
    crate::operator::plugins::package::check_name(name).map_err(ToolkitError::Plugin)?;
    let io_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| ToolkitError::Read { path, source }
    };
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(io_error(dir))?
            .next()
            .is_some()
    {
        return Err(ToolkitError::Plugin(format!(
            "{} exists and is not empty",
            dir.display()
        )));
    }
    let mut files: Vec<(PathBuf, String)> = TEMPLATES
        .iter()
        .filter_map(|(path, text)| {
            destination(path, lang, kind).map(|to| (to, render(text, name, lang, kind)))
        })
        .collect();
    files.push((PathBuf::from("wit/plugin.wit"), WIT.to_string()));
    for (relative, text) in &files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        std::fs::write(&path, text).map_err(io_error(&path))?;
    }
    Ok(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_template_goes_where_the_templates_readme_says() {
        let project = |lang, kind| -> Vec<String> {
            let mut paths: Vec<String> = TEMPLATES
                .iter()
                .filter_map(|(path, _)| destination(path, lang, kind))
                .map(|path| path.display().to_string())
                .collect();
            paths.sort();
            paths
        };
        assert_eq!(
            project(Lang::Rust, Kind::Validator),
            [
                ".gitignore",
                "Cargo.toml",
                "README.md",
                "fixtures/incidents/oom-crashloop.yaml",
                "fixtures/restart.yaml",
                "fixtures/scale-to-zero.yaml",
                "src/lib.rs",
            ]
        );
        assert_eq!(
            project(Lang::Js, Kind::Prompt),
            [
                ".gitignore",
                "README.md",
                "fixtures/incidents/oom-crashloop.yaml",
                "fixtures/oom-crashloop.yaml",
                "package.json",
                "plugin.js",
            ]
        );
        assert!(project(Lang::Python, Kind::Parser).contains(&"app.py".to_string()));
    }

    #[test]
    fn every_placeholder_is_filled() {
        for (_, text) in TEMPLATES {
            let rendered = render(text, "team-check", Lang::Python, Kind::Validator);
            assert!(!rendered.contains("{{"), "{rendered}");
        }
    }

    #[test]
    fn a_name_that_is_not_a_package_name_is_refused_and_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        assert!(write(&target, "Team Check", Lang::Rust, Kind::Prompt).is_err());
        assert!(!target.exists());
    }
}
