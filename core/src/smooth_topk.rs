//! Smooth top-k SVM.
