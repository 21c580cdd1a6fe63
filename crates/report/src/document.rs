//! The report as a list of blocks, written out as Markdown and as one self-contained HTML
//! page (figures embedded as base64 PNG data URIs, styles inline, no external references).
//!
//! Inline text may use `code` spans and **bold**; everything else is escaped.

use base64::Engine as _;

/// One block of the report.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    Heading(u8, String),
    Paragraph(String),
    /// A highlighted paragraph (a caveat that must not be missed).
    Warning(String),
    List(Vec<String>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
        /// Right-align columns that hold numbers.
        numeric: Vec<bool>,
    },
    Figure {
        /// Path of the PNG relative to the report, for Markdown.
        png_path: String,
        svg_path: String,
        title: String,
        caption: String,
        png: Vec<u8>,
    },
}

/// A number for a table: 4 decimals, scientific notation when very small or large, "NaN"
/// for missing values (as pandas prints them).
pub fn number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    let a = v.abs();
    if v != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.4e}")
    } else {
        format!("{v:.4}")
    }
}

/// [`number`] of an optional value.
pub fn opt_number(v: Option<f64>) -> String {
    v.map(number).unwrap_or_else(|| "NaN".into())
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown text of the blocks.
pub fn markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        match b {
            Block::Heading(level, text) => {
                out.push_str(&"#".repeat(usize::from((*level).clamp(1, 6))));
                out.push(' ');
                out.push_str(text);
                out.push_str("\n\n");
            }
            Block::Paragraph(text) => {
                out.push_str(text);
                out.push_str("\n\n");
            }
            Block::Warning(text) => {
                out.push_str("> **Warning.** ");
                out.push_str(&text.replace('\n', "\n> "));
                out.push_str("\n\n");
            }
            Block::List(items) => {
                for item in items {
                    out.push_str("- ");
                    out.push_str(&item.replace('\n', "\n  "));
                    out.push('\n');
                }
                out.push('\n');
            }
            Block::Table {
                header,
                rows,
                numeric,
            } => {
                let line = |cells: &[String]| {
                    let cells: Vec<String> = cells.iter().map(|c| md_cell(c)).collect();
                    format!("| {} |\n", cells.join(" | "))
                };
                out.push_str(&line(header));
                let rule: Vec<String> = (0..header.len())
                    .map(|i| {
                        if numeric.get(i).copied().unwrap_or(false) {
                            "---:".to_string()
                        } else {
                            "---".to_string()
                        }
                    })
                    .collect();
                out.push_str(&format!("| {} |\n", rule.join(" | ")));
                for r in rows {
                    out.push_str(&line(r));
                }
                out.push('\n');
            }
            Block::Figure {
                png_path,
                svg_path,
                title,
                caption,
                ..
            } => {
                out.push_str(&format!(
                    "![{}]({png_path})\n\n*{}* ([SVG]({svg_path}))\n\n",
                    title.replace(['[', ']'], ""),
                    caption
                ));
            }
        }
    }
    out
}

/// HTML-escapes text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Inline Markdown (`code`, **bold**) to HTML; the rest is escaped.
pub fn inline_html(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(&escape(part));
            out.push_str("</code>");
        } else {
            for (j, piece) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    out.push_str("<strong>");
                    out.push_str(&escape(piece));
                    out.push_str("</strong>");
                } else {
                    out.push_str(&escape(piece));
                }
            }
        }
    }
    out
}

const CSS: &str = "body{font-family:'DejaVu Sans',Verdana,sans-serif;max-width:1200px;margin:2em auto;\
padding:0 1em;color:#222;line-height:1.45}\
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}\
th,td{border:1px solid #ccc;padding:0.3em 0.6em}th{background:#f2f2f2}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}\
figcaption{font-size:0.9em;color:#444}\
.warning{background:#fff4e5;border-left:4px solid #e67e22;padding:0.6em 1em}\
code{background:#f4f4f4;padding:0 0.2em}";

/// One self-contained HTML page of the blocks.
pub fn html(title: &str, blocks: &[Block]) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        escape(title)
    );
    for b in blocks {
        match b {
            Block::Heading(level, text) => {
                let l = (*level).clamp(1, 6);
                out.push_str(&format!("<h{l}>{}</h{l}>\n", inline_html(text)));
            }
            Block::Paragraph(text) => {
                out.push_str(&format!("<p>{}</p>\n", inline_html(text)));
            }
            Block::Warning(text) => {
                out.push_str(&format!(
                    "<p class=\"warning\"><strong>Warning.</strong> {}</p>\n",
                    inline_html(text)
                ));
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    out.push_str(&format!("<li>{}</li>\n", inline_html(item)));
                }
                out.push_str("</ul>\n");
            }
            Block::Table {
                header,
                rows,
                numeric,
            } => {
                out.push_str("<table>\n<thead><tr>");
                for h in header {
                    out.push_str(&format!("<th>{}</th>", inline_html(h)));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for r in rows {
                    out.push_str("<tr>");
                    for (i, c) in r.iter().enumerate() {
                        if numeric.get(i).copied().unwrap_or(false) {
                            out.push_str(&format!("<td class=\"num\">{}</td>", escape(c)));
                        } else {
                            out.push_str(&format!("<td>{}</td>", inline_html(c)));
                        }
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table>\n");
            }
            Block::Figure {
                title,
                caption,
                png,
                ..
            } => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(png);
                out.push_str(&format!(
                    "<figure>\n<img alt=\"{}\" src=\"data:image/png;base64,{b64}\">\n\
                     <figcaption>{}</figcaption>\n</figure>\n",
                    escape(title),
                    inline_html(caption)
                ));
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(1.23456789), "1.2346");
        assert_eq!(number(0.0), "0.0000");
        assert_eq!(number(1.5e-5), "1.5000e-5");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "inf");
    }

    #[test]
    fn html_escapes_text_and_embeds_figures() {
        let blocks = vec![
            Block::Paragraph("a <b> & `x<y` **bold**".into()),
            Block::Figure {
                png_path: "figures/f.png".into(),
                svg_path: "figures/f.svg".into(),
                title: "t\"".into(),
                caption: "c".into(),
                png: vec![1, 2, 3],
            },
        ];
        let h = html("T", &blocks);
        assert!(h.contains("a &lt;b&gt; &amp; <code>x&lt;y</code> <strong>bold</strong>"));
        // base64 of [1, 2, 3] is "AQID" (RFC 4648).
        assert!(h.contains("src=\"data:image/png;base64,AQID\""));
        assert!(h.contains("alt=\"t&quot;\""));
    }

    #[test]
    fn markdown_tables_escape_pipes() {
        let md = markdown(&[Block::Table {
            header: vec!["a".into(), "b".into()],
            rows: vec![vec!["x|y".into(), "1.0".into()]],
            numeric: vec![false, true],
        }]);
        assert_eq!(md, "| a | b |\n| --- | ---: |\n| x\\|y | 1.0 |\n\n");
    }
}
