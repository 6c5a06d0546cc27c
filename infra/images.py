"""Built-in SageMaker algorithm images (factorization-machines:1, knn:1) per region.

A static copy of the public registry table in the SageMaker Python SDK 2.257.7,
`sagemaker/image_uri_config/factorization-machines.json` and `knn.json` (both list the same account
per region; repositories `factorization-machines` and `knn`, tag `1`, scopes training and inference).
The ISO partitions (us-iso*) are left out: their ECR domains are not public. Regenerate by reading
those two files (tests/infra checks this table against the installed SDK).
"""

from __future__ import annotations

ALGORITHMS = {"fm": "factorization-machines", "knn": "knn"}
TAG = "1"

# region -> account that hosts both algorithm repositories
REGISTRIES: dict[str, str] = {
    "af-south-1": "455444449433",
    "ap-east-1": "286214385809",
    "ap-northeast-1": "351501993468",
    "ap-northeast-2": "835164637446",
    "ap-northeast-3": "867004704886",
    "ap-south-1": "991648021394",
    "ap-south-2": "628508329040",
    "ap-southeast-1": "475088953585",
    "ap-southeast-2": "712309505854",
    "ap-southeast-3": "951798379941",
    "ap-southeast-4": "106583098589",
    "ca-central-1": "469771592824",
    "ca-west-1": "190319476487",
    "cn-north-1": "390948362332",
    "cn-northwest-1": "387376663083",
    "eu-central-1": "664544806723",
    "eu-central-2": "680994064768",
    "eu-north-1": "669576153137",
    "eu-south-1": "257386234256",
    "eu-south-2": "104374241257",
    "eu-west-1": "438346466558",
    "eu-west-2": "644912444149",
    "eu-west-3": "749696950732",
    "il-central-1": "898809789911",
    "me-central-1": "272398656194",
    "me-south-1": "249704162688",
    "sa-east-1": "855470959533",
    "us-east-1": "382416733822",
    "us-east-2": "404615174143",
    "us-gov-east-1": "237065988967",
    "us-gov-west-1": "226302683700",
    "us-west-1": "632365934929",
    "us-west-2": "174872318107",
}
SUPPORTED_REGIONS = tuple(REGISTRIES)


def ecr_domain(region: str) -> str:
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def image_uri(algorithm: str, region: str) -> str:
    """`<account>.dkr.ecr.<region>.<domain>/<repository>:1` for `fm` or `knn`."""
    return f"{REGISTRIES[region]}.dkr.ecr.{region}.{ecr_domain(region)}/{ALGORITHMS[algorithm]}:{TAG}"


def repository_arn(algorithm: str, region: str) -> str:
    """The ECR repository the SageMaker role may pull from (the image lives in AWS's account)."""
    return f"arn:{partition(region)}:ecr:{region}:{REGISTRIES[region]}:repository/{ALGORITHMS[algorithm]}"


# AWS's Spark processing container (the prepare step with `topx:prepare.engine: spark`, decision 0016):
# repository `sagemaker-spark-processing`, Spark 3.5, Python 3.12, CPU. Registry paths per region:
# "Docker Registry Paths and Example Code", e.g.
# https://docs.aws.amazon.com/sagemaker/latest/dg-ecr-paths/ecr-us-east-1.html#sagemaker-spark-processing-us-east-1
# (the same table as the SDK's `image_uri_config/spark.json`, "processing" 3.5; tests/infra checks it),
# for the regions above (every one of them has the image).
SPARK_REPOSITORY = "sagemaker-spark-processing"
SPARK_TAG = "3.5-cpu-py312"
SPARK_REGISTRIES: dict[str, str] = {
    "af-south-1": "309385258863",
    "ap-east-1": "732049463269",
    "ap-northeast-1": "411782140378",
    "ap-northeast-2": "860869212795",
    "ap-northeast-3": "102471314380",
    "ap-south-1": "105495057255",
    "ap-south-2": "873151114052",
    "ap-southeast-1": "759080221371",
    "ap-southeast-2": "440695851116",
    "ap-southeast-3": "800295151634",
    "ap-southeast-4": "819679513684",
    "ca-central-1": "446299261295",
    "ca-west-1": "000907499111",
    "cn-north-1": "671472414489",
    "cn-northwest-1": "844356804704",
    "eu-central-1": "906073651304",
    "eu-central-2": "142351485170",
    "eu-north-1": "330188676905",
    "eu-south-1": "753923664805",
    "eu-south-2": "833944533722",
    "eu-west-1": "571004829621",
    "eu-west-2": "836651553127",
    "eu-west-3": "136845547031",
    "il-central-1": "408426139102",
    "me-central-1": "395420993607",
    "me-south-1": "750251592176",
    "sa-east-1": "737130764395",
    "us-east-1": "173754725891",
    "us-east-2": "314815235551",
    "us-gov-east-1": "260923028637",
    "us-gov-west-1": "271483468897",
    "us-west-1": "667973535471",
    "us-west-2": "153931337802",
}


def spark_image_uri(region: str) -> str:
    """`<account>.dkr.ecr.<region>.<domain>/sagemaker-spark-processing:3.5-cpu-py312`."""
    return f"{SPARK_REGISTRIES[region]}.dkr.ecr.{region}.{ecr_domain(region)}/{SPARK_REPOSITORY}:{SPARK_TAG}"


def spark_repository_arn(region: str) -> str:
    return f"arn:{partition(region)}:ecr:{region}:{SPARK_REGISTRIES[region]}:repository/{SPARK_REPOSITORY}"
