"""Testing: helpers shared by the tests and the benchmarks (workloads and their oracles, the local
stack, live worker processes, Debian tools). Not part of the data flow; nothing else imports it."""
