//! Response bodies read under the minimum transfer rate: chunk by chunk (blobs), or whole
//! into memory up to a cap (manifests, configs, tokens, error documents).

use std::time::Instant;

use reqwest::Response;

use super::RegistryClient;
use crate::error::TimeoutPhase;
use crate::registry::errors;
use crate::registry::timeouts::RateMeter;
use crate::{Error, Result};

impl RegistryClient {
    /// A small body into memory, refusing more than `cap` bytes.
    pub async fn read_body(&self, response: Response, cap: usize, action: &str) -> Result<Vec<u8>> {
        let mut reader = self.reader(response, action);
        let mut out = Vec::new();
        while let Some(chunk) = reader.chunk().await? {
            if out.len() + chunk.len() > cap {
                return Err(Error::Http {
                    registry: self.registry.clone(),
                    why: format!("{action}: response larger than {cap} bytes"),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// A response body to read chunk by chunk under the minimum transfer rate.
    pub fn reader<'c>(&'c self, response: Response, action: &str) -> BodyReader<'c> {
        BodyReader {
            meter: RateMeter::new(&self.timeouts, Instant::now()),
            client: self,
            response,
            total: 0,
            action: action.to_string(),
        }
    }
}

/// A response body read under the minimum transfer rate.
pub struct BodyReader<'c> {
    client: &'c RegistryClient,
    response: Response,
    meter: RateMeter,
    total: u64,
    action: String,
}

impl BodyReader<'_> {
    /// The next piece of the body; `None` at its end. A body slower than the minimum rate
    /// over a window ends with [`Error::Timeout`].
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>> {
        let registry = &self.client.registry;
        loop {
            let window_end = tokio::time::Instant::from_std(self.meter.next_check());
            let piece = match tokio::time::timeout_at(window_end, self.response.chunk()).await {
                Ok(Ok(Some(c))) => Some(c),
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(e)) => return Err(errors::http(registry, &self.action, &e)),
                Err(_window_over) => None,
            };
            if let Some(c) = &piece {
                self.total += c.len() as u64;
            }
            if self.meter.check(Instant::now(), self.total).is_err() {
                let t = self.client.timeouts;
                let phase = TimeoutPhase::Body {
                    min_rate: t.min_rate,
                    window: t.window,
                };
                return Err(errors::timeout(registry, &self.action, phase));
            }
            if piece.is_some() {
                return Ok(piece);
            }
        }
    }
}
