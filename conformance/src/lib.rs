//! wirecall conformance: the vector notation, golden vectors, runners over public suites and Python interop.
