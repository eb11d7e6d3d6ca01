//! Filters that ship with the crate, for [`BufferEvent::filter`]: compression
//! (feature `deflate`) and TLS (feature `tls`).
//!
//! [`BufferEvent::filter`]: crate::bufferevent::BufferEvent::filter

#[cfg(feature = "deflate")]
#[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
pub mod deflate;

#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
