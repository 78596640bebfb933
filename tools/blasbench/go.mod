module cacheclip/tools/blasbench

go 1.26.8
