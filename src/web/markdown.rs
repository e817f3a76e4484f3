//! Notes are Markdown: rendered to HTML for the pages, with every piece of HTML the note
//! itself contains escaped, links only to http(s), mailto, relative or in-page targets, and
//! images shown as their text. A note cannot put markup or script into a page.

use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag, TagEnd};

/// The note as safe HTML.
pub fn render(note: &str) -> String {
    let mut dropped_links = 0usize;
    let events = Parser::new_ext(note, Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES)
        .filter_map(|event| match event {
            // Raw HTML in a note is shown as the text it is.
            Event::Html(text) | Event::InlineHtml(text) => Some(Event::Text(text)),
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                if safe_url(&dest_url) {
                    Some(Event::Start(Tag::Link {
                        link_type,
                        dest_url,
                        title,
                        id,
                    }))
                } else {
                    dropped_links += 1;
                    None
                }
            }
            Event::End(TagEnd::Link) if dropped_links > 0 => {
                dropped_links -= 1;
                None
            }
            // Images would load from anywhere: their alt text stays, as text.
            Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => None,
            other => Some(other),
        });
    let mut out = String::with_capacity(note.len() * 2);
    html::push_html(&mut out, events);
    out
}

fn safe_url(url: &CowStr<'_>) -> bool {
    let u = url.trim().to_ascii_lowercase();
    u.starts_with("http://")
        || u.starts_with("https://")
        || u.starts_with("mailto:")
        || u.starts_with('/')
        || u.starts_with('#')
        || !u.contains(':')
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn markdown_is_rendered() {
        let html = render("**Fixed** the `sink`; see [the log](/dags/x) and https://example.com");
        assert!(html.contains("<strong>Fixed</strong>"), "{html}");
        assert!(html.contains("<code>sink</code>"), "{html}");
        assert!(html.contains(r#"<a href="/dags/x">the log</a>"#), "{html}");
    }

    #[test]
    fn nothing_in_a_note_becomes_markup_or_script() {
        let html = render(
            "<script>alert(1)</script> <b onclick=x>b</b>\n\n[x](javascript:alert(1)) ![i](http://evil/i.png) [y](data:text/html,hi)",
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b "), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("data:text"), "{html}");
        assert!(
            html.contains('x') && html.contains('y'),
            "link texts stay: {html}"
        );
    }
}
