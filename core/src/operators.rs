//! Relaxed sort and top-k matrix operators.
