cat('OK')
