//! Running the real `pipe` binary.
