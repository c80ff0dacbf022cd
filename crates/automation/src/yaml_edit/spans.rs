//! The span tree and byte helpers of this module, for `crate::migrate`, which rewrites whole parts of an
//! object rather than one value but must leave every other byte as it was, just like the edits here.

pub(crate) use super::text::{
    block_entry_end, check_between, check_scalar_bytes, eol_at, indent_of, is_flow, line_end,
    line_number, line_start, render, render_key, style_of, Style,
};
pub(crate) use super::tree::{parse, Kind, Node};
