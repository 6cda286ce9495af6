SET ROLE bench_plain;
RESET ROLE;
