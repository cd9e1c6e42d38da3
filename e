/dev/fd/3: line 33: ./a: No such file or directory
