# Write about 8 MB to standard error, then a result (tests).
line <- strrep("x", 1000)
for (i in 1:8000) cat(line, "\n", file = stderr(), sep = "")
cat("the last line\n", file = stderr())
cat(42)
