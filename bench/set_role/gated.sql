SET ROLE bench_gated;
RESET ROLE;
