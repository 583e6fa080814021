//! HTML output: every value that reaches a page goes through [`escape`] (record fields are
//! written by the governed workload: paths, comm, endpoints), and every page has the same
//! frame, with no inline script or style (the CSP forbids both).

use std::fmt::Write;

/// `s` safe as HTML text and as a double- or single-quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters have no business in a page; shown as their code point.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `s` safe as one component of a URL query (`?key=VALUE`).
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The console's pages, for the navigation bar.
const NAV: [(&str, &str); 5] = [
    ("/", "Overview"),
    ("/policy", "Policy"),
    ("/lineage", "Lineage"),
    ("/proofs", "Proofs"),
    ("/health", "Health"),
];

/// A whole page: `title` (text, escaped here), the navigation with `current` marked, and
/// `body` (HTML the caller built with [`escape`]d values).
pub fn page(title: &str, current: &str, banner: Option<&str>, body: &str) -> String {
    let mut nav = String::new();
    for (href, name) in NAV {
        let mark = if href == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{mark}>{name}</a>");
    }
    let banner = banner
        .map(|b| format!("<p class=\"banner\" role=\"alert\">{}</p>", escape(b)))
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Rampart</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\">\
         <script src=\"/assets/console.js\" defer></script></head>\
         <body><header><span class=\"brand\">Rampart</span><nav>{nav}</nav></header>\
         {banner}<main><h1>{title}</h1>{body}</main>\
         <footer>Rampart governance console · read-only</footer></body></html>\n",
        title = escape(title),
    )
}

/// A two-column table of (label, HTML value) rows.
pub fn facts(rows: &[(&str, String)]) -> String {
    let mut out = String::from("<table class=\"facts\">");
    for (k, v) in rows {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{v}</td></tr>",
            escape(k)
        );
    }
    out.push_str("</table>");
    out
}

/// A `<code>` element around escaped text.
pub fn code(s: &str) -> String {
    format!("<code>{}</code>", escape(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_become_text() {
        assert_eq!(
            escape("<script>alert('x')</script>\"&"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"
        );
        assert_eq!(escape("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(escape("plain /usr/bin/ls"), "plain /usr/bin/ls");
    }

    #[test]
    fn query_values_cannot_leave_their_component() {
        assert_eq!(query_value("/tmp/a b&c=\"d\""), "/tmp/a%20b%26c%3D%22d%22");
    }

    #[test]
    fn the_title_is_escaped_and_the_current_page_marked() {
        let html = page("<x>", "/policy", Some("<b>"), "");
        assert!(html.contains("<title>&lt;x&gt; · Rampart</title>"));
        assert!(html.contains("<a href=\"/policy\" aria-current=\"page\">Policy</a>"));
        assert!(html.contains("&lt;b&gt;"));
        assert!(!html.contains("<x>") && !html.contains("<b>"));
    }
}
