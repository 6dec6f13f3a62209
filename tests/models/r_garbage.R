message("about to print something that is not JSON")
cat("this is not JSON {")
