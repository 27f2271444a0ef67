"""Speed benchmarks: offrl's updates/s beside a peer (d3rlpy), the machine's matmul rate,
evaluation throughput and peak memory. Above the engines: it drives `offrl.train`."""
