//! What every HTML page shares: the frame's data ([`Chrome`]) and rendering. Below the
//! pages, authentication and errors, which all use it.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};

/// What the layout needs on every page: who is logged in and the CSRF token for its forms.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    pub username: Option<String>,
    pub csrf: String,
    /// The user may change things (not a viewer): buttons that change things show.
    pub can_edit: bool,
}

impl Chrome {
    pub fn anonymous() -> Self {
        Chrome::default()
    }
}

/// A page as an HTML response.
pub fn render(page: &impl Template) -> Result<Response, askama::Error> {
    Ok(Html(page.render()?).into_response())
}
