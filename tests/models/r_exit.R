message("step 1 went fine")
message("something went wrong in step 2")
quit(save = "no", status = 3)
