//! The documented state machines of `src/states.rs` must be the ones in the code: the transition
//! tables of its module docs, and the `Next:` line of every state's doc comment, must equal
//! `JobStatus::can_become` and `SessionState::can_become` exactly, pair for pair.

use qcloud_core::{JobStatus, SessionState};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::str::FromStr;

const SOURCE: &str = include_str!("../src/states.rs");

const JOB_SECTION: &str = "Job transitions";
const SESSION_SECTION: &str = "Session transitions";

/// The `| from | to | when |` rows of the module docs, by the `## ` heading they stand under,
/// as (from, to) names with the backticks stripped.
fn doc_tables(source: &str) -> Result<BTreeMap<String, Vec<(String, String)>>, String> {
    let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for (n, line) in source.lines().enumerate() {
        let Some(doc) = line.strip_prefix("//!") else { continue };
        let doc = doc.trim();
        if let Some(heading) = doc.strip_prefix("## ") {
            section = Some(heading.trim().to_string());
            continue;
        }
        if !doc.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = doc.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() != 3 {
            return Err(format!("line {}: a transition row has 3 cells (from, to, when), got {}", n + 1, cells.len()));
        }
        if cells[0] == "from" || cells[0].chars().all(|c| c == '-' || c == ':') {
            continue; // header and separator
        }
        let Some(section) = &section else {
            return Err(format!("line {}: a transition row before any `## ` heading", n + 1));
        };
        if cells[2].is_empty() {
            return Err(format!("line {}: the transition {} -> {} does not say when", n + 1, cells[0], cells[1]));
        }
        let name = |c: &str| c.trim_matches('`').to_string();
        tables.entry(section.clone()).or_default().push((name(cells[0]), name(cells[1])));
    }
    Ok(tables)
}

/// Each variant's `Next:` doc line (`Next: `a`, `b`.` or `Next: none.`), by the variant's
/// string name, from the `Variant => "name",` lines of the `string_enum!` invocations.
fn documented_next(source: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out = BTreeMap::new();
    let mut next: Option<Vec<String>> = None;
    for (n, line) in source.lines().enumerate() {
        let line = line.trim();
        if let Some(doc) = line.strip_prefix("///") {
            if let Some(list) = doc.trim().strip_prefix("Next:") {
                let list = list.trim().trim_end_matches('.');
                next = Some(if list == "none" {
                    Vec::new()
                } else {
                    list.split(',').map(|s| s.trim().trim_matches('`').to_string()).collect()
                });
            }
            continue;
        }
        if let Some((_, rest)) = line.split_once(" => \"") {
            if let Some((name, _)) = rest.split_once('"') {
                let list =
                    next.take().ok_or_else(|| format!("line {}: state '{name}' has no `Next:` doc line", n + 1))?;
                out.insert(name.to_string(), list);
            }
            continue;
        }
        next = None; // a `Next:` line belongs to the variant right below its doc comment
    }
    Ok(out)
}

/// Parse documented pairs into the enum and compare them with `can_become`; the error lists
/// every pair that is allowed but not documented, documented but not allowed, or documented twice.
fn compare<S>(pairs: &[(String, String)], all: &[S], can_become: impl Fn(S, S) -> bool) -> Result<(), String>
where
    S: Copy + Ord + Debug + FromStr,
    S::Err: std::fmt::Display,
{
    let mut documented = BTreeSet::new();
    let mut problems = Vec::new();
    for (from, to) in pairs {
        let parse = |s: &str| S::from_str(s).map_err(|e| format!("row {from} -> {to}: {e}"));
        let pair = (parse(from)?, parse(to)?);
        if !documented.insert(pair) {
            problems.push(format!("documented twice: {from} -> {to}"));
        }
    }
    let allowed: BTreeSet<(S, S)> =
        all.iter().flat_map(|&a| all.iter().map(move |&b| (a, b))).filter(|&(a, b)| can_become(a, b)).collect();
    for p in allowed.difference(&documented) {
        problems.push(format!("allowed by can_become but not documented: {:?} -> {:?}", p.0, p.1));
    }
    for p in documented.difference(&allowed) {
        problems.push(format!("documented but not allowed by can_become: {:?} -> {:?}", p.0, p.1));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn table<'a>(tables: &'a BTreeMap<String, Vec<(String, String)>>, section: &str) -> &'a [(String, String)] {
    match tables.get(section) {
        Some(rows) => rows,
        None => panic!("src/states.rs has no `## {section}` table (found: {:?})", tables.keys().collect::<Vec<_>>()),
    }
}

/// The `Next:` lines as (from, to) pairs, for the states of one enum.
fn next_pairs<S: Copy + std::fmt::Display>(next: &BTreeMap<String, Vec<String>>, all: &[S]) -> Vec<(String, String)> {
    all.iter()
        .flat_map(|s| {
            let from = s.to_string();
            let tos = next.get(&from).unwrap_or_else(|| panic!("state '{from}' has no `Next:` doc line"));
            tos.iter().map(move |to| (from.clone(), to.clone()))
        })
        .collect()
}

#[test]
fn job_table_equals_can_become() {
    let tables = doc_tables(SOURCE).unwrap();
    compare(table(&tables, JOB_SECTION), JobStatus::ALL, JobStatus::can_become).unwrap();
}

#[test]
fn session_table_equals_can_become() {
    let tables = doc_tables(SOURCE).unwrap();
    compare(table(&tables, SESSION_SECTION), SessionState::ALL, SessionState::can_become).unwrap();
}

#[test]
fn only_the_two_tables_are_documented() {
    let tables = doc_tables(SOURCE).unwrap();
    let sections: Vec<&str> = tables.keys().map(String::as_str).collect();
    assert_eq!(sections, [JOB_SECTION, SESSION_SECTION]);
}

#[test]
fn every_state_documents_where_it_can_go() {
    let next = documented_next(SOURCE).unwrap();
    compare(&next_pairs(&next, JobStatus::ALL), JobStatus::ALL, JobStatus::can_become).unwrap();
    compare(&next_pairs(&next, SessionState::ALL), SessionState::ALL, SessionState::can_become).unwrap();
    assert_eq!(next.len(), JobStatus::ALL.len() + SessionState::ALL.len(), "{next:?}");
}

/// The check itself must catch drift: the real table with one row dropped, one row added, or one
/// row repeated is refused, and a misspelt state is an error.
#[test]
fn a_drifted_table_is_refused() {
    let tables = doc_tables(SOURCE).unwrap();
    let rows = table(&tables, JOB_SECTION).to_vec();

    let dropped = rows[1..].to_vec();
    let err = compare(&dropped, JobStatus::ALL, JobStatus::can_become).unwrap_err();
    assert!(err.contains("allowed by can_become but not documented"), "{err}");

    let mut added = rows.clone();
    added.push(("completed".into(), "queued".into()));
    let err = compare(&added, JobStatus::ALL, JobStatus::can_become).unwrap_err();
    assert!(err.contains("documented but not allowed by can_become: Completed -> Queued"), "{err}");

    let mut twice = rows.clone();
    twice.push(rows[0].clone());
    let err = compare(&twice, JobStatus::ALL, JobStatus::can_become).unwrap_err();
    assert!(err.contains("documented twice"), "{err}");

    let misspelt = vec![("queud".to_string(), "running".to_string())];
    let err = compare(&misspelt, JobStatus::ALL, JobStatus::can_become).unwrap_err();
    assert!(err.contains("queud"), "{err}");

    // A stricter code relation than the docs is caught too.
    let err = compare(&rows, JobStatus::ALL, |a, b| a.can_become(b) && b != JobStatus::Queued).unwrap_err();
    assert!(err.contains("documented but not allowed by can_become: Running -> Queued"), "{err}");
}

#[test]
fn the_parser_reads_sections_and_rejects_malformed_rows() {
    let src = "//! ## Job transitions\n//!\n//! | from | to | when |\n//! |---|---|---|\n//! | `queued` | `running` | rule 3 |\n";
    let tables = doc_tables(src).unwrap();
    assert_eq!(tables[JOB_SECTION], [("queued".to_string(), "running".to_string())]);
    assert!(doc_tables("//! ## Job transitions\n//! | `queued` | `running` |\n").is_err());
    assert!(doc_tables("//! ## Job transitions\n//! | `queued` | `running` | |\n").is_err());
    assert!(doc_tables("//! | `queued` | `running` | rule 3 |\n").is_err());
    assert!(documented_next("    Queued => \"queued\",\n").is_err());
}

/// The enums moved to `states`; every older path still names the same types.
#[test]
fn the_old_paths_still_work() {
    let job: qcloud_core::model::JobStatus = qcloud_core::states::JobStatus::Queued;
    let session: qcloud_core::model::SessionState = qcloud_core::states::SessionState::Pending;
    assert_eq!(job, JobStatus::Queued);
    assert_eq!(session, SessionState::Pending);
    assert_eq!("running".parse::<qcloud_core::JobStatus>(), Ok(JobStatus::Running));
    assert!("runnin".parse::<qcloud_core::JobStatus>().unwrap_err().to_string().contains("unknown JobStatus 'runnin'"));
}
