# Echo the parameters back with their sum, reporting progress and a log line (tests).
params <- jsonlite::fromJSON(commandArgs(trailingOnly = TRUE)[1])
message("PROGRESS 50 adding up")
message("hello from R")
cat(jsonlite::toJSON(list(sum = params$x + params$y, params = params), auto_unbox = TRUE, digits = NA))
