echo "loading rows"
