//! The scheme reference page, generated from the loaded descriptors in the reStructuredText shape
//! of the spec page (`authentication-schemes.rst`): a section per scheme with the list-table of
//! required secrets, the list-table of injected secrets, and the scheme's notes.

use std::fmt::Write as _;

use authplug_protocol::SchemeDescriptor;

/// The whole page for `schemes`, in the given order.
pub fn reference_page<'a>(schemes: impl IntoIterator<Item = &'a SchemeDescriptor>) -> String {
    let mut page = String::new();
    heading(&mut page, "Authentication schemes", '=');
    page.push_str("We support the following authentication schemes:\n");
    for scheme in schemes {
        page.push('\n');
        section(&mut page, scheme);
    }
    page
}

/// One scheme's section.
pub fn section(out: &mut String, scheme: &SchemeDescriptor) {
    heading(out, &scheme.display_name, '-');
    let intro = scheme.intro.clone().unwrap_or_else(|| {
        format!(
            "For connectors that use ``{}`` authentication, the following secrets are required:",
            scheme.id
        )
    });
    let _ = writeln!(out, "{intro}\n");
    let required: Vec<[String; 2]> = scheme
        .required
        .iter()
        .filter(|s| !s.operator)
        .map(|s| [literal(&s.name), s.description.clone()])
        .collect();
    list_table(out, &["Property", "Description"], "20, 30", &required);
    out.push_str("\nand the following secrets will be injected into the system:\n\n");
    let injected: Vec<[String; 3]> = scheme
        .injected
        .iter()
        .filter(|s| !s.compat)
        .map(|s| [literal(&s.name), s.description.clone(), s.value_type.to_string()])
        .collect();
    list_table(out, &["Property", "Description", "Type"], "20, 30, 10", &injected);
    let mut notes = scheme.notes.clone();
    let names = |names: Vec<&str>| names.iter().map(|n| literal(n)).collect::<Vec<_>>().join(", ");
    let compat: Vec<&str> =
        scheme.injected.iter().filter(|s| s.compat).map(|s| s.name.as_str()).collect();
    if !compat.is_empty() {
        notes.push(format!("For existing templates it also injects {}.", names(compat)));
    }
    let operator: Vec<&str> =
        scheme.required.iter().filter(|s| s.operator).map(|s| s.name.as_str()).collect();
    if !operator.is_empty() {
        notes.push(format!("The operator's configuration supplies {}.", names(operator)));
    }
    if !notes.is_empty() {
        out.push('\n');
        for note in &notes {
            let _ = writeln!(out, "* {note}");
        }
    }
}

fn heading(out: &mut String, title: &str, underline: char) {
    let _ = writeln!(out, "{title}\n{}\n", underline.to_string().repeat(title.chars().count()));
}

fn literal(name: &str) -> String {
    format!("``{name}``")
}

fn list_table<const N: usize>(
    out: &mut String,
    header: &[&str; N],
    widths: &str,
    rows: &[[String; N]],
) {
    let _ = writeln!(out, ".. list-table::\n   :widths: {widths}\n   :header-rows: 1\n");
    let header: [String; N] = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        for (i, cell) in row.iter().enumerate() {
            let bullet = if i == 0 { "* -" } else { "  -" };
            let _ = writeln!(out, "   {bullet} {cell}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_pages_shape() {
        let scheme: SchemeDescriptor = serde_json::from_value(serde_json::json!({
            "id": "api_key", "display_name": "API key", "serves": [{"auth": "api_key"}],
            "required": [{"name": "api_key", "description": "The key."}],
            "injected": [{"name": "api_key", "description": "The same key.", "type": "String"}],
            "notes": ["A note."]
        }))
        .unwrap();
        let mut out = String::new();
        section(&mut out, &scheme);
        let expected: String = [
            "API key",
            "-------",
            "",
            "For connectors that use ``api_key`` authentication, the following secrets are required:",
            "",
            ".. list-table::",
            "   :widths: 20, 30",
            "   :header-rows: 1",
            "",
            "   * - Property",
            "     - Description",
            "   * - ``api_key``",
            "     - The key.",
            "",
            "and the following secrets will be injected into the system:",
            "",
            ".. list-table::",
            "   :widths: 20, 30, 10",
            "   :header-rows: 1",
            "",
            "   * - Property",
            "     - Description",
            "     - Type",
            "   * - ``api_key``",
            "     - The same key.",
            "     - String",
            "",
            "* A note.",
        ]
        .iter()
        .map(|line| format!("{line}\n"))
        .collect();
        assert_eq!(out, expected);
    }
}
