//! Joining a replica to its cluster group (filled when cluster/ lands).
