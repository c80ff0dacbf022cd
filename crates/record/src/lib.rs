//! Record: what a successful sync leaves behind — the inventory of applied objects, and the sync marker
//! moved to the applied revision.
//!
//! The marker is either an annotated git tag force-pushed to the repository (needs a write key), or, for a
//! read-only key, an annotation on a Secret in tether's namespace. It only ever moves after a fully
//! successful sync, so it always names a revision that is entirely applied.

mod inventory;
mod marker;

pub use inventory::{inventory_name, Inventory, InventoryError, Stored};
pub use marker::{Error, Marker, HWM_ANNOTATION};
