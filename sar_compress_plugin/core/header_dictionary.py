"""The zstd dictionary that .sarc headers are compressed against from format version 4 on. Frozen: a reader of
version 4 needs exactly these bytes, so changing them means a new format version.

A small file's header was most of its overhead: on a 512 x 512 chip about 1.2 KB after plain zstd, a quarter
of the whole file at the lowest quality. Most of it is text every header repeats: key names, coder names, the
model and preprocessing blocks, WGS 84 / UTM CRS text. zstd matches those against this raw-content dictionary
instead of storing them (1,475 -> 208 bytes on the Frankfurt scene's header).

It is the concatenated JSON headers of three training scenes as sar-compress wrote them on 2026-11-28 (Berlin
GRD: EPSG:4326, linear intensity; Sen1Floods11 Ghana 53713: EPSG:4326, sigma0 dB; STAC Overflow Nigeria ayt12:
UTM 31N), with the format version set to 4. No validation scene's header is in it.
"""

from __future__ import annotations

HEADER_DICTIONARY: bytes = "".join([
    '{"format":"sarc","format_version":4,"software":"sar-compress 0.1.0","coders":{"latent":"range-meansc'
    'ale-int16","mask":"packbits-zstd","outlier":"zstd-int32-byteplanes"},"model":{"name":"sar-baseline-v'
    'r-cpu-v1","variant":"baseline","decoder_sha256":"518fb6c9baf8a2e8921bbdc50b866fd6ffdb1cfd71f9caf5f7e'
    '6c98d0c3d181b","encoder_sha256":"5b1176084dce61f109e71172a429696224f0cff8b208ac509ce83ef43fe56331","'
    'latent_channels":128,"downsampling_factor":16,"halo":32},"preprocessing":{"input_domain":"intensity"'
    ',"clip_rule":"per_band_percentile","clip_percentiles":[0.5,99.5],"clip_db":[-32.28530632019043,55.39'
    '276147842401],"noise_floor_db":-100.0,"extra":{"training_domains":["amplitude","db","intensity"],"cl'
    'ip_db_scope":"training split, all valid pixels"}},"domain":"intensity","clip_db":[[40.72318607330322'
    '5,66.0425908279419],[34.98325304031372,59.00556150436402]],"outliers":{"margin_db":4.104879007273939'
    ',"step_db":0.25,"pixels":578},"invalid_pixels":0,"rate":{"quality":2.5,"levels":6,"chosen_by":"defau'
    'lt"},"hyperprior":{"sha256":"e8c94d36bcc441957b5b452110fb82f9da8ab1121804077d6f0f889f460001e3"},"ras'
    'ter":{"width":512,"height":512,"band_count":2,"dtype":"float32","band_names":["Intensity_VV","Intens'
    'ity_VH"],"crs_wkt":"GEOGCS[\\"WGS 84\\",DATUM[\\"WGS_1984\\",SPHEROID[\\"WGS 84\\",6378137,298.2572235'
    '63,AUTHORITY[\\"EPSG\\",\\"7030\\"]],AUTHORITY[\\"EPSG\\",\\"6326\\"]],PRIMEM[\\"Greenwich\\",0,AUTHOR'
    'ITY[\\"EPSG\\",\\"8901\\"]],UNIT[\\"degree\\",0.0174532925199433,AUTHORITY[\\"EPSG\\",\\"9122\\"]],AXI'
    'S[\\"Latitude\\",NORTH],AXIS[\\"Longitude\\",EAST],AUTHORITY[\\"EPSG\\",\\"4326\\"]]","geotransform":['
    '13.378785799809089,8.983152841195163e-05,0.0,52.56805174260951,0.0,-8.983152841195163e-05],"nodata":'
    '[null,null],"metadata":{"AREA_OR_POINT":"Area","product":"IW GRD (SNAP subset, geocoded)","sensor":"'
    'Sentinel-1","source_path":"Data/SAR/Berlin/Intensity_*.img","source_repo":"rjaneth/identifying-heter'
    'ogeneity-in-sar-data-with-new-test-statistics","value_domain":"intensity (uncalibrated DN^2, linear)'
    '"},"bands":[{"description":"Intensity_VV","metadata":{},"color_interp":"Gray","scale":null,"offset":'
    'null},{"description":"Intensity_VH","metadata":{},"color_interp":"Undefined","scale":null,"offset":n'
    'ull}]},"tiling":{"tile_size":512,"halo":32,"factor":16,"cols":1,"rows":1,"method":"latent-overlap"},'
    '"chunks":{"latent":[[16,21892,3948515155],[22551,22044,1411122910]],"mask":[null,null],"outlier":[[2'
    '1908,643,1106009736],[44595,505,366931117]]},"overview":{"coder":"zstd-uint8-db-rowdelta","factor":3'
    '2,"width":16,"height":16,"db_range":[[37.723186073303225,69.0425908279419],[31.98325304031372,62.005'
    '56150436402]],"chunks":[[45100,266,1910627072],[45366,266,118864004]]}}',
    '{"format":"sarc","format_version":4,"software":"sar-compress 0.1.0","coders":{"latent":"range-meansc'
    'ale-int16","mask":"packbits-zstd","outlier":"zstd-int32-byteplanes"},"model":{"name":"sar-baseline-v'
    'r-cpu-v1","variant":"baseline","decoder_sha256":"518fb6c9baf8a2e8921bbdc50b866fd6ffdb1cfd71f9caf5f7e'
    '6c98d0c3d181b","encoder_sha256":"5b1176084dce61f109e71172a429696224f0cff8b208ac509ce83ef43fe56331","'
    'latent_channels":128,"downsampling_factor":16,"halo":32},"preprocessing":{"input_domain":"db","clip_'
    'rule":"per_band_percentile","clip_percentiles":[0.5,99.5],"clip_db":[-32.28530632019043,55.392761478'
    '42401],"noise_floor_db":-100.0,"extra":{"training_domains":["amplitude","db","intensity"],"clip_db_s'
    'cope":"training split, all valid pixels"}},"domain":"db","clip_db":[[-15.702554936408996,-4.71570958'
    '3759307],[-23.16714987754822,-11.683559379577634]],"outliers":{"margin_db":4.104879007273939,"step_d'
    'b":0.25,"pixels":41},"invalid_pixels":0,"rate":{"quality":2.5,"levels":6,"chosen_by":"default"},"hyp'
    'erprior":{"sha256":"e8c94d36bcc441957b5b452110fb82f9da8ab1121804077d6f0f889f460001e3"},"raster":{"wi'
    'dth":512,"height":512,"band_count":2,"dtype":"float32","band_names":["VV","VH"],"crs_wkt":"GEOGCS[\\"'
    'WGS 84\\",DATUM[\\"WGS_1984\\",SPHEROID[\\"WGS 84\\",6378137,298.257223563,AUTHORITY[\\"EPSG\\",\\"703'
    '0\\"]],AUTHORITY[\\"EPSG\\",\\"6326\\"]],PRIMEM[\\"Greenwich\\",0,AUTHORITY[\\"EPSG\\",\\"8901\\"]],UN'
    'IT[\\"degree\\",0.0174532925199433,AUTHORITY[\\"EPSG\\",\\"9122\\"]],AXIS[\\"Latitude\\",NORTH],AXIS['
    '\\"Longitude\\",EAST],AUTHORITY[\\"EPSG\\",\\"4326\\"]]","geotransform":[-1.6097809891421826,8.9831528'
    '41195215e-05,0.0,10.348592073056887,0.0,-8.983152841195215e-05],"nodata":["nan","nan"],"metadata":{"'
    'AREA_OR_POINT":"Area","SOURCE":"hardikkamboj/sen1floods11-segmentation:app/sample_data/S1/Ghana_5371'
    '3_S1Hand.tif","VALUE_DOMAIN":"sigma0_db"},"bands":[{"description":"VV","metadata":{},"color_interp":'
    '"Gray","scale":null,"offset":null},{"description":"VH","metadata":{},"color_interp":"Undefined","sca'
    'le":null,"offset":null}]},"tiling":{"tile_size":512,"halo":32,"factor":16,"cols":1,"rows":1,"method"'
    ':"latent-overlap"},"chunks":{"latent":[[16,34680,3511968672],[34740,35084,3987075769]],"mask":[null,'
    'null],"outlier":[[34696,44,292516353],[69824,131,95112827]]},"overview":{"coder":"zstd-uint8-db-rowd'
    'elta","factor":32,"width":16,"height":16,"db_range":[[-18.702554936408994,-1.715709583759307],[-26.1'
    '6714987754822,-8.683559379577634]],"chunks":[[69955,246,827729562],[70201,234,4064444082]]}}',
    '{"format":"sarc","format_version":4,"software":"sar-compress 0.1.0","coders":{"latent":"range-meansc'
    'ale-int16","mask":"packbits-zstd","outlier":"zstd-int32-byteplanes"},"model":{"name":"sar-baseline-v'
    'r-cpu-v1","variant":"baseline","decoder_sha256":"518fb6c9baf8a2e8921bbdc50b866fd6ffdb1cfd71f9caf5f7e'
    '6c98d0c3d181b","encoder_sha256":"5b1176084dce61f109e71172a429696224f0cff8b208ac509ce83ef43fe56331","'
    'latent_channels":128,"downsampling_factor":16,"halo":32},"preprocessing":{"input_domain":"db","clip_'
    'rule":"per_band_percentile","clip_percentiles":[0.5,99.5],"clip_db":[-32.28530632019043,55.392761478'
    '42401],"noise_floor_db":-100.0,"extra":{"training_domains":["amplitude","db","intensity"],"clip_db_s'
    'cope":"training split, all valid pixels"}},"domain":"db","clip_db":[[-25.984390964508055,-4.18399516'
    '5824883],[-33.57788116455078,-11.34717819213867]],"outliers":{"margin_db":4.104879007273939,"step_db'
    '":0.25,"pixels":266},"invalid_pixels":0,"rate":{"quality":2.5,"levels":6,"chosen_by":"default"},"hyp'
    'erprior":{"sha256":"e8c94d36bcc441957b5b452110fb82f9da8ab1121804077d6f0f889f460001e3"},"raster":{"wi'
    'dth":512,"height":512,"band_count":2,"dtype":"float32","band_names":["VV","VH"],"crs_wkt":"PROJCS[\\"'
    'WGS 84 / UTM zone 31N\\",GEOGCS[\\"WGS 84\\",DATUM[\\"WGS_1984\\",SPHEROID[\\"WGS 84\\",6378137,298.25'
    '7223563,AUTHORITY[\\"EPSG\\",\\"7030\\"]],AUTHORITY[\\"EPSG\\",\\"6326\\"]],PRIMEM[\\"Greenwich\\",0,A'
    'UTHORITY[\\"EPSG\\",\\"8901\\"]],UNIT[\\"degree\\",0.0174532925199433,AUTHORITY[\\"EPSG\\",\\"9122\\"]'
    '],AUTHORITY[\\"EPSG\\",\\"4326\\"]],PROJECTION[\\"Transverse_Mercator\\"],PARAMETER[\\"latitude_of_ori'
    'gin\\",0],PARAMETER[\\"central_meridian\\",3],PARAMETER[\\"scale_factor\\",0.9996],PARAMETER[\\"false_'
    'easting\\",500000],PARAMETER[\\"false_northing\\",0],UNIT[\\"metre\\",1,AUTHORITY[\\"EPSG\\",\\"9001'
    '\\"]],AXIS[\\"Easting\\",EAST],AXIS[\\"Northing\\",NORTH],AUTHORITY[\\"EPSG\\",\\"32631\\"]]","geotran'
    'sform":[792330.0,10.0,0.0,972100.0,0.0,-10.0],"nodata":[0.0,0.0],"metadata":{"AREA_OR_POINT":"Area",'
    '"SOURCE":"Dreamlone/floodwater-segmentation-net:codeexecution/data/test_features/ayt12_{vv,vh}.tif",'
    '"VALUE_DOMAIN":"sigma0_db"},"bands":[{"description":"VV","metadata":{},"color_interp":"Gray","scale"'
    ':null,"offset":null},{"description":"VH","metadata":{},"color_interp":"Undefined","scale":null,"offs'
    'et":null}]},"tiling":{"tile_size":512,"halo":32,"factor":16,"cols":1,"rows":1,"method":"latent-overl'
    'ap"},"chunks":{"latent":[[16,22984,1167569185],[23340,24480,2819787110]],"mask":[null,null],"outlier'
    '":[[23000,340,738379934],[47820,426,1050791511]]},"overview":{"coder":"zstd-uint8-db-rowdelta","fact'
    'or":32,"width":16,"height":16,"db_range":[[-28.984390964508055,-1.183995165824883],[-36.577881164550'
    '78,-8.34717819213867]],"chunks":[[48246,251,3690901789],[48497,242,4211129950]]}}',
]).encode("utf-8")

#: pinned by the tests: the bytes above may never change within format version 4
HEADER_DICTIONARY_SHA256 = "67ffb854fb9e27e19625c59cce74aa2984e72f1068381e2c633921c1f11436d7"
