#!/bin/sh
# Fills a running `farm-demo` with what the dashboard's production views show:
# materials (two of them low), spools (two mounted), maintenance tasks (one overdue and
# blocking) and three shop orders. Usage: scripts/demo-seed.sh [http://127.0.0.1:8080]
# The demo lets loopback in as an operator, so no token is needed.
set -eu
FARM=${1:-http://127.0.0.1:8080}
BASE=$FARM/api/v1
GCODE=$(dirname "$0")/../demo/samples/cable-clip.gcode
post() { curl -sSf -o /dev/null -X POST "$BASE$1" -H 'content-type: application/json' -d "$2"; }

post /materials '{"material":"PLA","colour":"Black","cost_per_kg":20,"low_stock_g":500}'
post /materials '{"material":"PLA","colour":"White","cost_per_kg":20,"low_stock_g":500}'
post /materials '{"material":"PETG","colour":"Orange","cost_per_kg":25,"low_stock_g":800}'
post /materials '{"material":"PLA","colour":"Red","cost_per_kg":22,"low_stock_g":500}'
post /spools '{"material":"pla-black","initial_g":1000,"count":3,"lot":"B-2211","location":"shelf A"}'
post /spools '{"material":"pla-white","initial_g":1000,"count":2,"location":"shelf A"}'
post /spools '{"material":"petg-orange","initial_g":350,"lot":"O-17","location":"shelf B"}'
post /spools/s-1/load '{"printer":"demo-03","tool":0}'
post /spools/s-4/load '{"printer":"demo-04","tool":0}'
post /maintenance/tasks '{"printer":"demo-05","name":"Clean and lube Z rods","interval":{"days":28},"blocking":true,"last_done_at":"2020-01-01T00:00:00Z"}'
post /maintenance/tasks '{"printer":"demo-07","name":"Check belt tension","interval":{"days":14},"last_done_at":"2020-01-01T00:00:00Z"}'

SHA=$(curl -sSf -X POST "$BASE/files?name=cable-clip.gcode" -H 'content-type: application/octet-stream' \
  --data-binary @"$GCODE" | sed 's/.*"sha256":"\([0-9a-f]*\)".*/\1/')
order() { post /orders "{\"customer_ref\":\"$1\",\"items\":[{\"sha256\":\"$SHA\",\"name\":\"cable clip\",\"quantity\":$2,\"material\":\"$3\",\"colour\":\"$4\"}]}"; }
order ETSY-4411 4 PLA Black
order SHOP-1093 2 PETG Orange
order SHOP-1094 1 PLA White
echo "Seeded: see $FARM/#/orders, $FARM/#/stock and $FARM/#/timeline"
