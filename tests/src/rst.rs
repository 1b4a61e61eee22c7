//! Reads the scheme reference page (`authentication-schemes.rst` and what `authplug docs` writes)
//! into comparable data: per section, the rows of its two list-tables.

use std::collections::BTreeMap;

/// One scheme's section: its required rows (property, description) and injected rows (property,
/// description, type), properties without their ``literal`` quotes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    pub required: Vec<Vec<String>>,
    pub injected: Vec<Vec<String>>,
}

/// The sections of a page, by title.
pub fn sections(page: &str) -> BTreeMap<String, Section> {
    let lines: Vec<&str> = page.lines().collect();
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    let mut i = 0;
    let flush = |title: &Option<String>,
                 tables: &mut Vec<Vec<Vec<String>>>,
                 out: &mut BTreeMap<String, Section>| {
        if let Some(title) = title {
            let mut tables = std::mem::take(tables).into_iter();
            out.insert(
                title.clone(),
                Section {
                    required: tables.next().unwrap_or_default(),
                    injected: tables.next().unwrap_or_default(),
                },
            );
        }
    };
    while i < lines.len() {
        let line = lines[i];
        let underline = lines.get(i + 1).copied().unwrap_or("");
        if !line.trim().is_empty()
            && underline.len() >= line.trim().len()
            && !underline.is_empty()
            && underline.chars().all(|c| c == '-')
        {
            flush(&current, &mut tables, &mut out);
            current = Some(line.trim().to_owned());
            i += 2;
            continue;
        }
        if line.trim_start().starts_with(".. list-table::") {
            let (rows, next) = list_table(&lines, i + 1);
            tables.push(rows.into_iter().skip(1).collect()); // drop the header row
            i = next;
            continue;
        }
        i += 1;
    }
    flush(&current, &mut tables, &mut out);
    out
}

/// The rows of a list-table starting after its directive line; returns the rows and the index of
/// the first line after the table.
fn list_table(lines: &[&str], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut rows: Vec<Vec<String>> = Vec::new();
    while i < lines.len() {
        let trimmed = lines[i].trim();
        if let Some(cell) = trimmed.strip_prefix("* - ") {
            rows.push(vec![clean(cell)]);
        } else if let Some(cell) = trimmed.strip_prefix("- ") {
            match rows.last_mut() {
                Some(row) => row.push(clean(cell)),
                None => break,
            }
        } else if trimmed.starts_with(':') || trimmed.is_empty() && rows.is_empty() {
            // options and the blank line before the rows
        } else {
            break;
        }
        i += 1;
    }
    (rows, i)
}

fn clean(cell: &str) -> String {
    cell.trim().trim_start_matches("``").trim_end_matches("``").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_tables_of_a_section() {
        let page = "T\n=\n\nAPI key\n-------\n\nintro\n\n.. list-table::\n   :widths: 20, 30\n   :header-rows: 1\n\n   * - Property\n     - Description\n   * - ``api_key``\n     - The key.\n\nand\n\n.. list-table::\n   :header-rows: 1\n\n   * - Property\n     - Description\n     - Type\n   * - ``api_key``\n     - Same.\n     - String\n\n* note\n";
        let sections = sections(page);
        assert_eq!(
            sections["API key"].required,
            vec![vec!["api_key".to_owned(), "The key.".to_owned()]]
        );
        assert_eq!(
            sections["API key"].injected,
            vec![vec!["api_key".to_owned(), "Same.".to_owned(), "String".to_owned()]]
        );
    }
}
