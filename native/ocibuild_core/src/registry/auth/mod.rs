//! Registry auth, by concern: what a job asks for (`scopes`), what a 401 asks us for
//! (`challenge`), what we answer with (`answer`: a Basic header or a token request), the
//! token server's side (`token`), and the negotiated headers kept per scope (`cache`).
//!
//! Nothing here sends a request: the client's one retry loop sends the token request
//! [`token::TokenRequest`] describes, like any other, so token fetches get the same retries,
//! timeouts and origin rule as every registry request.

pub mod answer;
pub mod cache;
pub mod challenge;
pub mod scopes;
pub mod token;

pub use answer::{choose, Answer};
pub use cache::AuthCache;
pub use challenge::Challenge;
pub use scopes::{Access, Scopes};
