//! wirecall: remote calls with pluggable serialization (servers, providers, proxies, name server).
