//! `web/static`, compiled into the binary so one file serves everything (no CDN).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const FILES: [(&str, &str, &str); 3] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../web/static/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/static/app.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../web/static/favicon.svg"),
    ),
];

/// `/favicon.ico`, which browsers ask for on their own: the SVG icon.
pub async fn favicon() -> Response {
    serve(Path("favicon.svg".to_string())).await
}

pub async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, mime, body)) => (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such static file").into_response(),
    }
}
