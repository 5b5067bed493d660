//! Image references now live in [`crate::reference`], below `image/` and `supply/` which use
//! them too; this path stays so existing callers compile unchanged.

pub use crate::reference::*;
